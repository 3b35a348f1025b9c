"""Build RESULTS.md from the runs' results.json files, beside the paper's tables.

    python scripts/make_results.py    # reads results/{mnist,fashion_mnist}/*/*/results.json

Nothing in RESULTS.md is typed by hand: every "ours" number is read from a results.json that
`python main.py --mode=whitebox ...` wrote (its command is listed), and the paper's numbers are
Table 4 of arXiv:1805.06605v2 (white-box, MNIST, L=200, R=10), copied below.
"""

import argparse
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # results_*.py beside it

from defense_gan import results, stats  # noqa: E402
from defense_gan.config import DEFAULT_ADV_TRAIN_EPS  # noqa: E402
from defense_gan.files import write_text_atomic  # noqa: E402

# Paper Table 4: (no attack, no defense, Defense-GAN-Rec, MagNet, Adv.Tr. eps 0.3)
PAPER_MNIST = {
    "fgsm": {"A": (0.997, 0.217, 0.988, 0.191, 0.651), "B": (0.962, 0.022, 0.956, 0.082, 0.060),
             "C": (0.996, 0.331, 0.989, 0.163, 0.786), "D": (0.992, 0.038, 0.980, 0.094, 0.732)},
    "rand_fgsm": {"A": (0.997, 0.179, 0.988, 0.171, 0.774),
                  "B": (0.962, 0.017, 0.944, 0.091, 0.138),
                  "C": (0.996, 0.103, 0.985, 0.151, 0.907),
                  "D": (0.992, 0.050, 0.980, 0.115, 0.539)},
    "cw": {"A": (0.997, 0.141, 0.989, 0.038, 0.077), "B": (0.962, 0.032, 0.916, 0.034, 0.280),
           "C": (0.996, 0.126, 0.989, 0.025, 0.031), "D": (0.992, 0.032, 0.983, 0.021, 0.010)},
}
PAPER_FASHION = {
    "fgsm": {"A": (0.934, 0.102, 0.879, 0.089, 0.797), "B": (0.747, 0.102, 0.629, 0.168, 0.136),
             "C": (0.933, 0.139, 0.896, 0.110, 0.804), "D": (0.892, 0.082, 0.875, 0.099, 0.698)},
    "rand_fgsm": {"A": (0.934, 0.102, 0.888, 0.096, 0.447),
                  "B": (0.747, 0.131, 0.661, 0.161, 0.119),
                  "C": (0.933, 0.105, 0.893, 0.112, 0.699),
                  "D": (0.892, 0.091, 0.862, 0.104, 0.626)},
    "cw": {"A": (0.934, 0.076, 0.896, 0.060, 0.157), "B": (0.747, 0.172, 0.656, 0.131, 0.118),
           "C": (0.933, 0.063, 0.896, 0.084, 0.107), "D": (0.892, 0.090, 0.875, 0.069, 0.149)},
}
PAPER_TABLE4 = {"mnist": PAPER_MNIST, "fashion_mnist": PAPER_FASHION}
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
# Paper Tables 8 (MNIST) and 9 (F-MNIST), model F, L=200, R=10, no attack: Defense-GAN-Orig
# (the classifier trained on clean images) and Defense-GAN-Rec (retrained on reconstructions).
PAPER_F_NO_ATTACK = {"mnist": {"orig": 0.9712, "rec": 0.9860},
                     "fashion_mnist": {"orig": 0.8373, "rec": 0.9145}}


def paper_clean(model, variant, dataset="mnist", attack="fgsm"):
    """The paper's Defense-GAN accuracy on unattacked images of `model` with the `variant`
    classifier ("orig" or "rec"): Table 4's Defense-GAN-Rec of `attack`'s table for A-D (Rec
    only: Table 4 has no Orig column; the release's vanished gradient made it a clean-image
    number, so it differs between attacks only by the paper's noise), Tables 8/9 for F; else
    None."""
    if model == "F":
        return PAPER_F_NO_ATTACK[dataset][variant]
    if variant == "rec" and model in PAPER_TABLE4[dataset].get(attack, {}):
        return PAPER_TABLE4[dataset][attack][model][2]
    return None


ATTACK_TITLES = {"fgsm": "FGSM (eps 0.3)", "rand_fgsm": "RAND+FGSM (eps 0.3, alpha 0.05)",
                 "cw": "CW-L2 (100 iterations, lr 10, c 100, 1 binary-search step)"}
# PGD, the latent-space attack and every run with BPDA + EOT, the unrolled gradient or cheaper
# attack projections go to the "Adaptive evaluation" section instead of the Table 4 layout.
ADAPTIVE_ATTACKS = ("pgd", "latent")

# Athalye, Carlini, Wagner (ICML 2018), Table 1 (as in anishathalye/obfuscated-gradients'
# README): Defense-GAN on MNIST, distance 0.005 (l2, their normalisation), accuracy 55%.
ATHALYE = {"distance": 0.005, "accuracy": 0.55}
MNIST_PIXELS = 28 * 28


def load_runs(folder):
    runs = []
    for path in sorted(glob.glob(os.path.join(folder, "*", "results.json"))):
        with open(path) as f:
            r = json.load(f)
        r["path"] = os.path.relpath(os.path.dirname(path), REPO)
        runs.append(r)
    return runs


def restored_by_predicted_labels(run):
    """Of a Defense-GAN run whose attack moved away from the model's own prediction, the
    fraction of its images whose clean projection is misclassified and whose attacked one is
    classified correctly (the attack pushed them back to the true class), from its per-batch
    records; None without records or with true labels."""
    if run["settings"].get("attack_settings", {}).get("labels") == "true labels":
        return None
    recs = []
    for path in sorted(glob.glob(os.path.join(REPO, run["path"], "records", "batch_*.json"))):
        with open(path) as f:
            saved = json.load(f)
        recs += saved["records"] if isinstance(saved, dict) else saved
    if not recs or "pred_clean_defended" not in recs[0]:
        return None
    return sum(r["pred_clean_defended"] != r["label"] and r["pred_adv_defended"] == r["label"]
               for r in recs) / len(recs)


def labels_bullet(runs) -> list:
    """The 'Labels of the attacks' bullet, with the points restored in the DG BPDA FGSM cells."""
    restored = {}
    for r in runs:
        s = r["settings"]
        if (s["attack"], s["defense"], s.get("gradient")) == ("fgsm", "defense_gan", "bpda") \
                and not is_adaptive(r):
            value = restored_by_predicted_labels(r)
            if value is not None:
                restored[s["model"]] = value
    if not restored:
        return []
    points = ", ".join(f"{m} {100 * v:.1f}" for m, v in sorted(restored.items()))
    return ["- **Labels of the attacks.** FGSM, RAND+FGSM and CW move away from the attacked "
            "model's own prediction on the clean image (CleverHans' default without labels, as "
            "the release ran them), so an image the defense already gets wrong can be pushed "
            "back to its true class. In the DG, BPDA FGSM cells the images whose clean "
            "projection is misclassified and whose attacked one is classified correctly are, "
            f"in points of accuracy: {points} (from each run's records). The adaptive "
            "section's PGD and latent attacks use the true labels (README, `--attack_labels`)."]


def is_adaptive(run) -> bool:
    """Runs of the Adaptive evaluation section (see ADAPTIVE_ATTACKS)."""
    s = run["settings"]
    return (s["attack"] in ADAPTIVE_ATTACKS or "attacker_knowledge" in s
            or s.get("gradient") == "unrolled")


def split_by_generator(runs, generator_files: dict):
    """(runs for the table, Defense-GAN runs made with another generator than the shipped one,
    whose numbers would no longer be reproducible from the listed command)."""
    current, stale = [], []
    for r in runs:
        used = r["settings"]["checkpoints"].get("generator")
        (stale if used is not None and used["sha256"] != generator_files else current).append(r)
    return current, stale


def pick(runs, model, attack, defense, gradient=None, adv_train_eps=None, variant=None):
    """The run with the most images for this cell (ties: the newest). Runs of an adversarially
    trained classifier at another eps than 0.15 (settings' adv_train_eps) or of a Rec classifier
    (classifier_variant "rec") only fill cells that ask for them."""
    cands = [r for r in runs if not is_adaptive(r) and r["settings"]["model"] == model
             and r["settings"]["attack"] == attack and r["settings"]["defense"] == defense
             and (gradient is None or r["settings"]["gradient"] == gradient)
             and r["settings"].get("adv_train_eps") == adv_train_eps
             and r["settings"].get("classifier_variant") == variant
             and r["settings"].get("precision", "float32") == "float32"]
    return results.most_images(cands)


def rec_clean_run(runs, model, attack):
    """The Defense-GAN-Rec run whose clean-image accuracy fills the DG-Rec clean rec. cell of
    `attack`'s table: that attack's run, else another attack's (the clean images, their
    projection and the Rec classifier do not depend on the attack, so one run per model
    fills the column of every table)."""
    for a in (attack, *(x for x in ATTACK_TITLES if x != attack)):
        found = (pick(runs, model, a, "defense_gan", "classifier", variant="rec")
                 or pick(runs, model, a, "defense_gan", "bpda", variant="rec"))
        if found:
            return found
    return None


def accuracy_text(run, key):
    """'0.470 [0.439, 0.501] n=1000': a run's accuracy `key` with its 95% Wilson interval and
    sample size, or '·' (no run / no such accuracy)."""
    return "·" if run is None else stats.format_metric(run["metrics"], key)


def cell(run, key, paper=None, tag=""):
    ours = accuracy_text(run, key)
    return ours if paper is None else f"{ours} ({paper:.3f}{' ' + tag if tag else ''})"


def bpda_cell(run):
    """The DG, BPDA cell: `known / fresh` when the run also projected the adversarial images
    with restarts the attacker never saw (iterative attacks), else the plain accuracy."""
    plain = cell(run, "adversarial_accuracy")
    if run is None or run["metrics"].get("adversarial_accuracy_fresh_seed") is None:
        return plain
    return f"{plain} / {accuracy_text(run, 'adversarial_accuracy_fresh_seed')} fresh"


def n_of(*runs):
    ns = sorted({r["metrics"]["num_images"] for r in runs if r is not None})
    return "/".join(str(n) for n in ns) or "·"


def span(values, digits=3):
    lo, hi = (f"{v:.{digits}f}" for v in (min(values), max(values)))
    return lo if lo == hi else f"{lo}-{hi}"


def reading(runs, dataset="mnist"):
    """Per attack, the Defense-GAN numbers in one sentence each, computed from the runs (the
    models with a run; paper values for the same models), so the text cannot go stale."""
    out = []
    for attack in ("fgsm", "rand_fgsm", "cw"):
        cols = {}
        for model in "ABCDEF":
            dg_c = pick(runs, model, attack, "defense_gan", "classifier")
            dg_b = pick(runs, model, attack, "defense_gan", "bpda")
            none = pick(runs, model, attack, "none")
            for key, r, metric in (("rec", dg_c or dg_b, "defended_clean_accuracy"),
                                   ("cls", dg_c, "adversarial_accuracy"),
                                   ("bpda", dg_b, "adversarial_accuracy"),
                                   ("fresh", dg_b, "adversarial_accuracy_fresh_seed"),
                                   ("none", none, "adversarial_accuracy"),
                                   ("mse_clean", dg_c, "mean_mse_clean"),
                                   ("mse_adv", dg_c, "mean_mse_adv")):
                if r is not None and r["metrics"].get(metric) is not None:
                    cols.setdefault(key, {})[model] = r["metrics"][metric]
        if "rec" not in cols:
            continue
        models = "".join(sorted(cols["rec"]))
        text = (f"- **{ATTACK_TITLES[attack].split(' (')[0]}** (models {models}): Defense-GAN on "
                f"clean images {span(cols['rec'].values())}")
        paper = {}
        for m in sorted(cols["rec"]):
            value, protocol = paper_clean_rec(attack, m, dataset)
            if value is not None:
                paper.setdefault(protocol, {})[m] = value
        if paper:
            text += " (the paper, same models: " + "; ".join(
                f"Defense-GAN-{protocol} {span(v.values())} ({''.join(v)})"
                for protocol, v in sorted(paper.items(), reverse=True)) + ")"
        if "cls" in cols:
            text += (f"; on images attacked with the undefended classifier's gradient "
                     f"{span(cols['cls'].values())} (models {''.join(sorted(cols['cls']))}")
            base = [cols["none"][m] for m in cols["cls"] if m in cols.get("none", {})]
            text += f"; without the defense {span(base)})" if base else ")"
        if "bpda" in cols:
            text += (f"; through BPDA {span(cols['bpda'].values())} (models "
                     f"{''.join(sorted(cols['bpda']))}")
            text += (f"; the same adversarial images projected with restarts the attack never "
                     f"saw {span(cols['fresh'].values())})" if "fresh" in cols else ")")
        if "mse_adv" in cols:
            text += (f". Mean reconstruction MSE per pixel: clean {span(cols['mse_clean'].values(), 4)}"
                     f", attacked {span(cols['mse_adv'].values(), 4)} (the detection statistic)")
        out.append(text + ".")
    if not out:
        return []
    return ["## Reading the Defense-GAN columns", "",
            "Computed from the runs above (ranges over the models that have a run):", "",
            *out, ""]


def examples(runs, model="A"):
    """Markdown lines embedding each attack's example grid for `model` through Defense-GAN
    (the BPDA run where there is one), for the runs whose examples.png exists."""
    out = []
    for attack in ATTACK_TITLES:  # the table order
        r = (pick(runs, model, attack, "defense_gan", "bpda")
             or pick(runs, model, attack, "defense_gan", "classifier"))
        if r is None or not os.path.isfile(os.path.join(REPO, r["path"], "examples.png")):
            continue
        gradient = "through BPDA" if r["settings"]["gradient"] == "bpda" else \
            "with the undefended classifier's gradient"
        out += [f"**{ATTACK_TITLES[attack]}, model {model}, {gradient}** (`{r['path']}`):", "",
                f"![{attack} examples, model {model}]({r['path']}/examples.png)", ""]
    if not out:
        return []
    return ["## Examples", "",
            "The first 10 test images of a run; rows: clean, adversarial, Defense-GAN's "
            "reconstruction of the adversarial image, its reconstruction of the clean image.",
            "", *out]


def load_sweeps(folder):
    """Every <folder>/<run>/sweep.json (written by whitebox --sweep_eps), with its path."""
    from defense_gan import plots
    sweeps = []
    for path in sorted(glob.glob(os.path.join(folder, "*", "sweep.json"))):
        with open(path) as f:
            sweep = json.load(f)
        sweep["path"] = os.path.relpath(os.path.dirname(path), REPO)
        if "flags" in sweep:  # the label of today's code (older files said less)
            sweep["label"] = plots.curve_label(sweep["flags"])
        sweeps.append(sweep)
    return sweeps


def budget_text(settings):
    a = settings["attack_settings"]
    if settings["attack"] == "pgd":
        restarts = a.get("restarts", 1)
        return (f"{a['norm']} {a['eps']:g}, {a['nb_iter']} steps of {a['eps_iter']:.3g}"
                + (f", {restarts} restarts" if restarts > 1 else ""))
    if settings["attack"] == "latent":
        return f"unbounded, {a['iterations']} Adam steps, c {a['c']:g}"
    return a.get("norm", "") + (f" {a['eps']:g}" if "eps" in a else "")


def gradient_text(settings):
    if settings["defense"] != "defense_gan":
        return "exact"
    if settings["attack"] == "latent":
        return "latent search"
    text = settings["gradient"]
    if settings.get("eot_samples"):
        text += f" + EOT {settings['eot_samples']}"
    known = settings.get("attacker_knowledge", {}).get("attack_projection")
    if known and (known["rec_iters"], known["rec_rr"]) != (settings["rec_iters"],
                                                           settings["rec_rr"]):
        text += (f" (attack projects at L={known['rec_iters']}, R={known['rec_rr']}"
                 f"{', bf16' if known['precision'] == 'bfloat16' else ''})")
    return text


def labels_text(settings) -> str:
    """'true' or 'predicted': the labels a run's attack moved away from (--attack_labels)."""
    return ("true" if settings.get("attack_settings", {}).get("labels") == "true labels"
            else "predicted")


def adaptive_section(all_runs, sweeps, curves_dir=None):
    """Markdown lines of the "Adaptive evaluation" section: every adaptive run, each beside the
    same model's FGSM-through-BPDA cell (the strongest single-step number of the tables
    above) and the paper's protocol (DG clean rec.), plus the latent attack beside Athalye et
    al.'s number, plus the robust-accuracy curves (PNG written to `curves_dir`)."""
    runs = [r for r in all_runs if is_adaptive(r)]
    if not runs and not sweeps:
        return []
    lines = ["## Adaptive evaluation", "",
             "Iterative attacks through the defense (issue 16). Every Defense-GAN accuracy here "
             "is measured with the faithful projection (L=200, R=10, float32) unless the row "
             "says otherwise; `unseen seed` is the accuracy with projection restarts the attack "
             "never saw (with BPDA + EOT the attack draws its own restarts, so both columns are "
             "unseen-seed numbers; without EOT the first column let the attacker know the "
             "defender's restarts). Single-step numbers (FGSM) are upper bounds on robustness; "
             "so is every row here: a stronger attack can only lower them.", ""]
    if runs:
        lines += ["| model | attack | budget | defense | attacker's gradient | labels attacked | "
                  "images | accuracy | unseen seed | mean L2 | FGSM through BPDA | DG clean rec. "
                  "(paper protocol) | run |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        key = lambda r: (r["settings"]["model"], r["settings"]["attack"],  # noqa: E731
                         r["settings"]["defense"], r["path"])
        for r in sorted(runs, key=key):
            st = r["settings"]
            fgsm = pick(all_runs, st["model"], "fgsm", "defense_gan", "bpda")
            rec = (pick(all_runs, st["model"], "fgsm", "defense_gan", "classifier") or fgsm)
            gan = st["defense"] == "defense_gan"
            defense = st["defense"] + (  # settings name the eps only when not the default
                f" {st.get('adv_train_eps', DEFAULT_ADV_TRAIN_EPS):g}"
                if st["defense"] == "adv_tr" else "")
            lines.append(
                f"| {st['model']} | {st['attack']} | {budget_text(st)} | {defense} | "
                f"{gradient_text(st)} | {labels_text(st)} | {r['metrics']['num_images']} | "
                f"{accuracy_text(r, 'adversarial_accuracy')} | "
                f"{accuracy_text(r, 'adversarial_accuracy_fresh_seed') if gan else '-'} | "
                f"{r['metrics']['mean_l2']:.2f} | "
                f"{accuracy_text(fgsm, 'adversarial_accuracy') if gan else '-'} | "
                f"{accuracy_text(rec, 'defended_clean_accuracy') if gan else '-'} | "
                f"`{r['path']}` |")
        lines.append("")
    latent = [r for r in runs if r["settings"]["attack"] == "latent"]
    if latent:
        lines += ["### Latent-space attack beside Athalye et al.", "",
                  f"Athalye, Carlini and Wagner (ICML 2018, Table 1): Defense-GAN on MNIST at "
                  f"distance {ATHALYE['distance']} (l2, their normalisation), accuracy "
                  f"{ATHALYE['accuracy']:.0%}, i.e. {1 - ATHALYE['accuracy']:.0%} success. "
                  "Their notebook's example reports the raw L2 ||G(z) - x||_2 (3.10 for test "
                  "image 0, i.e. a per-pixel mean square of 0.0123), which fits 0.005 read as "
                  "a per-pixel mean square (raw L2 about 1.98) and not as a root mean square "
                  "(raw L2 0.14); we give all three.", "",
                  "| model | images | G(z) misclassified (found) | defense fooled, unseen seed "
                  "| mean L2 of found | mean sq. L2 / pixel | RMS / pixel |",
                  "|---|---|---|---|---|---|---|"]
        for r in latent:
            m = r["metrics"]
            n = m["num_images"]
            found = m.get("changed_fraction") or 0.0
            fresh = m.get("adversarial_accuracy_fresh_seed")
            fooled = stats.format_metric(
                {"num_images": n, "fooled": None if fresh is None else 1 - fresh}, "fooled")
            sq = m.get("mean_l2_sq_changed")
            l2 = m.get("mean_l2_changed")
            lines.append(
                f"| {r['settings']['model']} | {n} | {found:.3f} | {fooled} | "
                f"{'·' if l2 is None else f'{l2:.2f}'} | "
                f"{'·' if sq is None else f'{sq / MNIST_PIXELS:.4f}'} | "
                f"{'·' if sq is None else f'{(sq / MNIST_PIXELS) ** 0.5:.4f}'} |")
        lines.append("")
    if sweeps:
        lines += ["### Robust-accuracy curves", "",
                  "Accuracy vs eps (`--sweep_eps`), 95% Wilson bands:", ""]
        groups = {}
        for sw in sweeps:
            groups.setdefault((sw["model"], sw["attack"], sw["norm"]), []).append(sw)
        for (model, attack, norm), group in sorted(groups.items()):
            name = f"curves_{model}_{attack}_{norm}.png"
            if curves_dir:
                from defense_gan import plots
                plots.plot_curves(os.path.join(curves_dir, name), group,
                                  f"MNIST, model {model}, {attack} ({norm})")
            rel = os.path.relpath(os.path.join(curves_dir or "", name), REPO) \
                if curves_dir else name
            lines += [f"![accuracy vs eps, model {model}, {attack}]({rel})", ""]
            lines += ["| curve | " + " | ".join(f"eps {p['eps']:g}" for p in sorted(
                group[0]["points"], key=lambda p: p["eps"])) + " |",
                "|---|" + "---|" * len(group[0]["points"])]
            for sw in group:
                pts = sorted(sw["points"], key=lambda p: p["eps"])
                lines.append(f"| {sw['label']} | " + " | ".join(
                    f"{p['adversarial_accuracy']:.3f} n={p['num_images']}" for p in pts) + " |")
            lines.append("")
    return lines


def paper_clean_rec(attack, model, dataset="mnist"):
    """(value, protocol) the reading section compares our Defense-GAN-Orig clean accuracy with:
    Table 4's Defense-GAN-Rec for A-D (its white-box Defense-GAN column; it has no Orig one),
    Tables 8/9's Defense-GAN-Orig for F, else (None, None)."""
    if model == "F":
        return paper_clean("F", "orig", dataset), "Orig"
    value = paper_clean(model, "rec", dataset, attack)
    return (value, "Rec") if value is not None else (None, None)


def magnet_cell(run, paper):
    """MagNet under its own counting (a detected adversarial image is handled), then the
    classifier on the reformed image alone (detectors ignored), then the paper's value."""
    if run is None or run["metrics"].get("reformed_adversarial_accuracy") is None:
        return cell(run, "adversarial_accuracy", paper)
    text = (f"{accuracy_text(run, 'adversarial_accuracy')} / reformed only "
            f"{accuracy_text(run, 'reformed_adversarial_accuracy')}")
    return text if paper is None else f"{text} ({paper:.3f})"


def magnet_run(runs, model, attack):
    """The MagNet run of a cell: the exact end-to-end gradient (full) where there is one, else
    BPDA through the reformer, else the classifier's gradient."""
    for gradient in ("full", "bpda", "classifier"):
        r = pick(runs, model, attack, "magnet", gradient)
        if r is not None:
            return r
    return None


def classifiers_bullet(classifier_accuracy: dict, dataset: str) -> str:
    """The 'Classifiers' reason: each shipped classifier's clean test accuracy (its manifest)
    beside the paper's No-attack value, and which are below it beyond the Wilson interval."""
    text = ("- **Classifiers** are trained once each with seed 0 for 10 epochs; their clean test "
            f"accuracies (n=10,000, in each `checkpoints/{dataset}/classifier_*/manifest.json`)")
    paper = PAPER_TABLE4[dataset]["fgsm"]
    pairs = [(m, classifier_accuracy[m], paper[m][0]) for m in sorted(paper)
             if m in classifier_accuracy]
    if not pairs:
        return text + " are in the Shipped checkpoints table."
    interval = {m: stats.wilson_interval(round(ours * 10000), 10000) for m, ours, _ in pairs}
    below = [m for m, _, theirs in pairs if interval[m][1] < theirs]
    above = [m for m, _, theirs in pairs if interval[m][0] > theirs]
    text += " against the paper's No-attack column: " + ", ".join(
        f"{m} {ours:.3f} ({theirs:.3f})" for m, ours, theirs in pairs) + "."
    if below:
        text += f" Below the paper's value beyond the 95% interval: {', '.join(below)}."
    if above:
        text += f" Above it beyond the interval: {', '.join(above)}."
    return text


def build(runs, stale=(), sweeps=(), curves_dir=None, dataset="mnist", classifier_accuracy=None):
    classifier_accuracy = classifier_accuracy or {}
    name = DATASET_NAMES[dataset]
    f_paper = PAPER_F_NO_ATTACK[dataset]
    lines = [
        f"# Results: white-box {name} (paper Table 4 layout)", "",
        "Generated by `python scripts/make_results.py` from the `results.json` of each run under",
        f"`results/{dataset}/whitebox/` (the command of every run is listed below the tables).",
        "Cells read `ours [95% Wilson interval] n=images (paper)`; `·` is a run not done yet.",
        "Defense-GAN at L=200, R=10.", "",
        "Columns:",
        "- **No attack**: the undefended classifier on clean test images.",
        "- **No defense**: the classifier on adversarial images computed with its own gradient.",
        "- **DG-Orig clean rec.**: Defense-GAN on *unattacked* images, classifier(G(z*(x))), with",
        "  the classifier trained on clean images (the paper's Defense-GAN-Orig). Because the",
        "  release's gradient through the projection vanished (its issues #1, #14), FGSM there",
        "  returned the clean image, so the paper's white-box Defense-GAN column measured this,",
        "  with Defense-GAN-Rec (next column). The paper gives Orig only for model F (Tables 8/9,",
        f"  L=200, R=10, no attack): Orig {f_paper['orig']:.3f}, Rec {f_paper['rec']:.3f}.",
        "- **DG-Rec clean rec.**: the same with the classifier trained on reconstructions",
        "  (`--rec_classifier`, checkpoints `classifier_<m>_rec`): the paper's Table 4",
        "  Defense-GAN-Rec column.",
        "- **DG, classifier grad.**: the attack is computed on the undefended classifier, then the",
        "  adversarial image is projected (the authors' advice in the release's issue #1).",
        "- **DG, BPDA**: the attack sees the full defense forward and the identity backward through",
        "  the projection (Athalye et al. 2018), with the defender's projection seed known to",
        "  the attacker. This is the honest white-box number. For CW it reads `known / fresh`:",
        "  `fresh` re-projects the same adversarial images with restarts the attack never saw.",
        "- **MagNet**: MagNet's reformer and detectors (`--defense=magnet`), the attack with the",
        "  exact gradient of classifier(reformer(x)) (`--magnet_gradient=full`; detectors not in",
        "  the loss), counted as MagNet counts: a detected adversarial image is handled; then",
        "  `reformed only`: the classifier on the reformed image, detectors ignored.",
        "- **Adv. tr. 0.3 / 0.15**: the classifier adversarially trained on (clean + FGSM eps)/2",
        "  at eps 0.3 (the paper's Table 4 column) or 0.15 (the release's default; no paper",
        "  value), attacked white-box with its own gradient.",
        "", "The two attacked Defense-GAN columns have no paper counterpart (see below).",
        ""]
    table = PAPER_TABLE4[dataset]
    checkpoints = {}
    for attack in ATTACK_TITLES:  # the table order
        if not any(r["settings"]["attack"] == attack for r in runs):
            continue
        lines += [f"## {ATTACK_TITLES[attack]}", "",
                  "| model | images | No attack | No defense | DG-Orig clean rec. | DG-Rec clean "
                  "rec. | DG, classifier grad. | DG, BPDA | MagNet | Adv. tr. 0.3 | Adv. tr. 0.15 "
                  "| mean L2 (no def. / BPDA) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for model in "ABCDEF":
            none = pick(runs, model, attack, "none")
            dg_c = pick(runs, model, attack, "defense_gan", "classifier")
            dg_b = pick(runs, model, attack, "defense_gan", "bpda")
            rec = rec_clean_run(runs, model, attack)
            mag = magnet_run(runs, model, attack)
            adv3 = pick(runs, model, attack, "adv_tr", adv_train_eps=0.3)
            adv = pick(runs, model, attack, "adv_tr")
            row_runs = (none, dg_c, dg_b, rec, mag, adv3, adv)
            if not any(row_runs):
                continue
            paper = table.get(attack, {}).get(model, (None,) * 5)
            rec_run = dg_c or dg_b
            rec_paper = paper_clean(model, "rec", dataset, attack)
            l2 = " / ".join("·" if r is None else f"{r['metrics']['mean_l2']:.2f}"
                            for r in (none, dg_b))
            lines.append(
                f"| {model} | {n_of(*row_runs)} | "
                f"{cell(none or rec_run, 'clean_accuracy', paper[0])} | "
                f"{cell(none, 'adversarial_accuracy', paper[1])} | "
                f"{cell(rec_run, 'defended_clean_accuracy', paper_clean(model, 'orig', dataset))} | "
                f"{cell(rec, 'defended_clean_accuracy', rec_paper)} | "
                f"{cell(dg_c, 'adversarial_accuracy')} | {bpda_cell(dg_b)} | "
                f"{magnet_cell(mag, paper[3])} | "
                f"{cell(adv3, 'adversarial_accuracy', paper[4])} | "
                f"{cell(adv, 'adversarial_accuracy')} | {l2} |")
            for r in row_runs:
                if r is not None:
                    for name_, c in r["settings"]["checkpoints"].items():
                        checkpoints.setdefault((name_, c["folder"].split("checkpoints/")[-1]),
                                               set()).add(
                            str(c.get("iterations", c.get("epochs", "")) or "") + " " +
                            c["sha256"].get("weights.data-00000-of-00001", "")[:12])
        lines.append("")
    lines += reading(runs, dataset)
    lines += adaptive_section(runs, list(sweeps), curves_dir)
    lines += examples(runs)
    lines += ["## Checkpoints used", "",
              "| checkpoint | generator iterations, sha256 of the weights (first 12) |", "|---|---|"]
    for (name, folder), ids in sorted(checkpoints.items()):
        lines.append(f"| {folder} | {', '.join(sorted(ids))} |")
    lines += ["", "## Why numbers differ from the paper (where known)", "",
              "- **Generator training.** The release trained 200,000 generator iterations on a "
              "GPU; the shipped generator's iterations are in the table above (a 2-core CPU "
              "does one to two per second, so it was trained about 10x less). A less trained "
              "generator reconstructs clean images less faithfully, which lowers the DG clean "
              "rec. column, and its range may hold fewer adversarial look-alikes, which can "
              "raise the attacked DG columns; the direction of the net effect is not known.",
              "- **The attacked Defense-GAN columns have no counterpart in the paper.** Its "
              "white-box Defense-GAN numbers were computed through the vanished gradient, so "
              "they match our DG clean rec. column (shown beside it, with the protocol "
              "difference above), not an attack on the defense.",
              "- **CW-L2.** The release's settings (learning rate 10, constant 100, one binary-"
              "search step, 100 iterations) make a very strong, high-distortion attack: see the "
              "mean L2 column. The paper's No-defense CW numbers are higher than ours; the "
              "release's CleverHans v2 CW may have aborted earlier or clipped differently.",
              classifiers_bullet(classifier_accuracy, dataset),
              "- **Images.** The paper evaluates the full 10,000-image test set; we use the first "
              "N test images (N in each row), so small differences are within sampling noise "
              "(about +-0.01 at N=1000 and accuracy 0.9).",
              "- **MagNet.** The paper does not say how it counted MagNet's detections; its "
              "MagNet column lies near our `reformed only` figure (the classifier on the "
              "reformed image, detectors ignored), not near MagNet's own counting, under which "
              "the detectors (thresholds at FPR 0.001 on validation images) flag almost every "
              "eps-0.3 FGSM image and CW image with the release's high-distortion settings.",
              "- **Adv. tr. 0.15** is the release's default training eps; the paper's Table 4 "
              "column used eps 0.3 (our Adv. tr. 0.3 column). An empty cell is a run not made "
              "yet; the Shipped checkpoints table lists which adversarially trained, Rec and "
              "MagNet checkpoints exist (`scripts/train_baselines.sh`, "
              "`scripts/train_rec_classifiers.sh`; then `scripts/run_whitebox.sh`)."]
    lines += labels_bullet(runs)
    cw_bpda = [r for r in runs if r["settings"]["attack"] == "cw"
               and r["settings"]["defense"] == "defense_gan" and r["settings"]["gradient"] == "bpda"]
    if cw_bpda:
        sizes = ", ".join(f"{r['settings']['model']}: {r['metrics']['num_images']}"
                          for r in sorted(cw_bpda, key=lambda r: r["settings"]["model"]))
        lines.append("- **CW through BPDA** runs the whole projection in each of CW's 100 "
                     "iterations (about 100 projections per image), so it was run on fewer "
                     f"images ({sizes}); the images column lists every sample size of a row. "
                     "At 50 images the standard error of an accuracy is at most about 0.07 "
                     "(at 0.5). "
                     "CW keeps, per image, the perturbation that fooled the defense as the "
                     "attack saw it, projection restarts included (the attacker knows the "
                     "defender's seed); the `fresh` figure projects the same adversarial images "
                     "with restarts the attack never saw, as a deployed defense drawing new z0 "
                     "per input would. Attacks on the randomness itself (BPDA + EOT) are in the "
                     "Adaptive evaluation section.")
    lines += ["", "## Commands", "", "Each row above comes from one of these runs:", ""]
    for r in sorted(runs, key=lambda r: r["path"]):
        m = r["metrics"]
        lines.append(f"- `{r['command']}` ({m['num_images']} images) -> `{r['path']}`")
    if stale:
        lines += ["", "## Runs left out", "",
                  "Defense-GAN runs made with a generator that is no longer the shipped one "
                  "(rerun them to bring them back):", ""]
        for r in sorted(stale, key=lambda r: r["path"]):
            g = r["settings"]["checkpoints"]["generator"]
            lines.append(f"- `{r['path']}` (generator at {g.get('iterations')} iterations, "
                         f"{r['metrics']['num_images']} images)")
    return "\n".join(lines) + "\n"


def whitebox_text(dataset: str, runs_dir: str, gan_dir: str) -> str:
    """The white-box part of RESULTS.md for one data set (empty where it has no run)."""
    manifest = os.path.join(gan_dir, "manifest.json")
    try:
        with open(manifest) as f:
            generator_files = json.load(f)["files"]
    except (OSError, ValueError, KeyError) as err:
        sys.exit(f"error: --gan_dir: cannot read '{manifest}' ({err})")
    runs, stale = split_by_generator(load_runs(runs_dir), generator_files)
    if not runs and not stale:
        return ""
    print(f"{dataset}: {len(runs)} white-box runs ({len(stale)} left out: other generator)")
    import results_checkpoints
    shipped = dict(results_checkpoints.load_manifests(os.path.dirname(gan_dir)))
    accuracy = {}  # of the shipped classifiers only: the bullet names no other
    for model in PAPER_TABLE4[dataset]["fgsm"]:
        manifest = shipped.get(f"classifier_{model}")
        if manifest is None:
            continue
        try:
            accuracy[model] = manifest["metrics"]["test_accuracy"]
        except KeyError as err:
            sys.exit(f"error: no test accuracy ({err}) in the manifest of "
                     f"'{os.path.join(os.path.dirname(gan_dir), f'classifier_{model}')}'")
    return build(runs, stale, load_sweeps(runs_dir), runs_dir, dataset, accuracy)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(REPO, "results"),
                        help="the folder holding <dataset>/{whitebox,blackbox,detect}/")
    parser.add_argument("--out", default=os.path.join(REPO, "RESULTS.md"))
    parser.add_argument("--checkpoints", default=os.path.join(REPO, "checkpoints"),
                        help="the shipped generators (<dataset>/gan): Defense-GAN runs made "
                        "with another one are left out of the tables")
    args = parser.parse_args()
    import results_blackbox
    import results_checkpoints
    import results_detection
    parts = []
    for dataset in ("mnist", "fashion_mnist"):
        white = whitebox_text(dataset, os.path.join(args.results, dataset, "whitebox"),
                              os.path.join(args.checkpoints, dataset, "gan"))
        parts.append(white)
        parts.append(results_blackbox.section(REPO, dataset))
        # Detection and the L / R sweeps (MNIST: Tables 8, 10 and 13; Fashion-MNIST: 9, 11).
        parts.append(results_detection.section(REPO, dataset))
    parts.append(results_checkpoints.section(args.checkpoints))
    write_text_atomic(args.out, "\n".join(p for p in parts if p))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
