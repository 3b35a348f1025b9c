"""The Detection, L / R sweep and reconstruction-time sections of RESULTS.md, beside the paper.

    python scripts/results_detection.py           # print the Markdown
    python scripts/results_detection.py --plot    # also write results/mnist/sweeps/sweeps.png

`section()` returns the Markdown (scripts/make_results.py includes it); every "ours" number is
read from a results.json that `python main.py --mode=detect ...` wrote (its command is shown)
or from benchmarks/results/reconstruction_time*.json; missing runs say which command fills
them. Paper numbers: Figs 4-5 legends, Tables 8, 10 and 13 of arXiv:1805.06605v2 (PAPER.md).
"""

import argparse
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from defense_gan.files import write_bytes_atomic  # noqa: E402

# Paper, MNIST, model F, FGSM black-box eps 0.3, substitute E: (Rec no attack, Orig no attack,
# Rec attacked, Orig attacked) mean±std as printed, and the detection AUC of the Figs 4-5
# legends (None where the PDF's legend has no entry).
PAPER_TABLE8 = {25: ("0.9273±0.0215", "0.9141±0.0033", "0.7955±0.0045", "0.7998±0.0063", 0.973),
                50: ("0.9567±0.0203", "0.9371±0.0048", "0.8516±0.0078", "0.8472±0.0026", 0.985),
                100: ("0.9728±0.0164", "0.9560±0.0051", "0.8953±0.0027", "0.8911±0.0024", None),
                200: ("0.9860±0.0010", "0.9712±0.0028", "0.9210±0.0023", "0.9155±0.0032", None),
                400: ("0.9869±0.0082", "0.9808±0.0044", "0.9332±0.0027", "0.9307±0.0034", 0.999),
                800: ("0.9934±0.0009", "0.9938±0.0004", "0.9319±0.0038", "0.9216±0.0005", 1.0),
                1600: ("0.9963±0.0013", "0.9967±0.0005", "0.9081±0.0062", "0.9008±0.0095", 1.0)}
PAPER_TABLE10 = {1: ("0.7035±0.0035", "0.6436±0.0017", "0.5329±0.0094", "0.5011±0.0085", 0.836),
                 2: ("0.8619±0.0010", "0.8080±0.0029", "0.6722±0.0041", "0.6605±0.0050", 0.922),
                 5: ("0.9523±0.0006", "0.9213±0.0024", "0.8199±0.0097", "0.8228±0.0038", 0.982),
                 10: ("0.9810±0.0015", "0.9560±0.0051", "0.8956±0.0032", "0.8911±0.0024", None),
                 20: ("0.9966±0.0009", "0.9753±0.0010", "0.9456±0.0031", "0.9310±0.0023", None)}
# Fig 4/5 legend, MNIST, L=400, R=10, black-box FGSM: AUC per eps (0.30 has no entry).
PAPER_EPS_AUC = {0.1: 0.914, 0.15: 0.975, 0.2: 0.989, 0.25: 0.998, 0.3: None}
# Fashion-MNIST: Tables 9 (vary L, R=10) and 11 (vary R, L=100; no R=20 row), the same columns;
# AUCs from the Fig 5 legends (None: no entry), and per eps at L=200, R=10.
PAPER_TABLE9 = {25: ("0.8037±0.0050", "0.7595±0.0009", "0.4040±0.0149", "0.3910±0.0119", 0.935),
                50: ("0.8676±0.0018", "0.7898±0.0016", "0.4412±0.0023", "0.3980±0.0114", 0.954),
                100: ("0.9101±0.0032", "0.8190±0.0043", "0.4808±0.0088", "0.4221±0.0255", 0.965),
                200: ("0.9145±0.0014", "0.8373±0.0054", "0.5119±0.0038", "0.4594±0.0056", None),
                400: ("0.9490±0.0013", "0.8557±0.0049", "0.5126±0.0096", "0.4754±0.0102", 0.983),
                800: ("0.9588±0.0065", "0.8832±0.0042", "0.5520±0.0098", "0.4644±0.0092", 0.987),
                1600: ("0.9640±0.0010", "0.9125±0.0040", "0.5335±0.0226", "0.4952±0.0155",
                       None)}
PAPER_TABLE11 = {1: ("0.8425±0.0008", "0.5597±0.0015", "0.3504±0.0102", "0.3380±0.0043", 0.794),
                 2: ("0.8994±0.0051", "0.7793±0.0023", "0.4050±0.0148", "0.3508±0.0167", 0.876),
                 5: ("0.9260±0.0028", "0.6726±0.0006", "0.4521±0.0177", "0.4024±0.0085", 0.945),
                 10: ("0.9101±0.0032", "0.8190±0.0043", "0.4808±0.0088", "0.4221±0.0255", 0.965)}
PAPER_EPS_AUC_FASHION = {0.1: 0.775, 0.15: 0.884, 0.2: 0.94, 0.25: 0.969, 0.3: 0.985}
# Per dataset: its name, the L and R tables (number, paper values; the rows are the paper's),
# and the L of its per-eps AUCs (the Figs 4-5 legends).
DATASETS = {
    "mnist": {"name": "MNIST", "L": ("Table 8", PAPER_TABLE8), "R": ("Table 10", PAPER_TABLE10),
              "eps_auc": PAPER_EPS_AUC, "eps_auc_L": 400},
    "fashion_mnist": {"name": "Fashion-MNIST", "L": ("Table 9", PAPER_TABLE9),
                      "R": ("Table 11", PAPER_TABLE11),
                      "eps_auc": PAPER_EPS_AUC_FASHION, "eps_auc_L": 200},
}


def sweeps_dir(dataset: str = "mnist") -> str:
    return os.path.join("results", dataset, "sweeps")


def detect_dir(dataset: str = "mnist") -> str:
    return os.path.join("results", dataset, "detect")


def sweep_cmd(dataset: str = "mnist") -> str:
    return ("" if dataset == "mnist" else f"DATASET={dataset} ") + "scripts/run_sweeps.sh"


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _ci(value, ci, digits=3):
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _acc(curve, key):
    a = curve["accuracy"]
    return "-" if a.get(key) is None else _ci(a[key], a[f"{key}_ci95"])


def _mean(printed: str) -> float:
    """The mean of a paper value printed as 'mean±std'."""
    return float(printed.split("±")[0])


def _paper(v):
    return "-" if v is None else str(v)


def detection_table(root: str, dataset: str = "mnist") -> str:
    """One row per curve of every detect run under results/<dataset>/detect, and of the ROC run
    per eps under results/<dataset>/sweeps (roc_*: there it shares the sweep's projection
    cache)."""
    rows = []
    paths = sorted(glob.glob(os.path.join(root, detect_dir(dataset), "*", "results.json"))) + \
        sorted(glob.glob(os.path.join(root, sweeps_dir(dataset), "roc_*", "results.json")))
    for path in paths:
        r = _load(path)
        if not r:
            continue
        s, t = r["settings"], r["threshold"]
        run = os.path.relpath(os.path.dirname(path), root)
        for c in r["curves"]:
            rows.append(
                f"| {c['label']} | {s['rec_iters']} | {s['rec_rr']} | {c['n_attacked']} | "
                f"{_ci(c['auc'], c['auc_ci95'])} | {paper_auc(c['label'], dataset)} | "
                f"{_ci(c['detection_rate'], c['detection_rate_ci95'])} | "
                f"{_ci(c['test_clean_fpr'], c['test_clean_fpr_ci95'])} | "
                f"{t['target_fpr']:g} on {t['validation_n']} | "
                f"[{os.path.basename(run)}]({run}/results.json) |")
        if not r["curves"]:
            rows.append(f"| (none: {r['attacks_available']}) | {s['rec_iters']} | {s['rec_rr']} "
                        f"| - | - | - | - | {_ci(t['test_clean_fpr'], t['test_clean_fpr_ci95'])} | "
                        f"{t['target_fpr']:g} on {t['validation_n']} | {run} |")
    if not rows:
        return (f"No detect run yet: `python main.py --flagfile=flags/{dataset}.cfg "
                "--mode=detect --model=F --num_tests=200`.\n")
    return (f"| attack (model F) | L | R | n | AUC [bootstrap 95%] | paper AUC "
            f"(L={DATASETS[dataset]['eps_auc_L']}) | "
            "detected at the threshold [Wilson 95%] | clean test flagged | target FPR on "
            "validation images | run |\n|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def paper_auc(label: str, dataset: str = "mnist") -> str:
    """The Fig 4 (5) legend's AUC for a black-box FGSM curve of that eps, else '-' (the paper
    has no AUC for white-box attacks)."""
    if not label.startswith("black-box FGSM eps "):
        return "-"
    eps = float(label.split("eps ")[1].split()[0].rstrip(","))
    return _paper(DATASETS[dataset]["eps_auc"].get(round(eps, 2)))


def sweep_cells(root: str, dataset: str = "mnist") -> dict:
    """{(classifier 'orig'|'rec', L, R): (results.json, its eps-0.3 curve)}."""
    cells = {}
    for path in glob.glob(os.path.join(root, sweeps_dir(dataset), "*", "results.json")):
        r = _load(path)
        name = os.path.basename(os.path.dirname(path))
        if not r or not r["curves"] or not name.startswith(("orig_", "rec_")):
            continue
        s = r["settings"]
        cells[(name.split("_")[0], s["rec_iters"], s["rec_rr"])] = (
            os.path.relpath(os.path.dirname(path), root), r, r["curves"][0])
    return cells


def sweep_table(cells: dict, values, vary: str, paper: dict) -> str:
    fixed = {"L": ("R", 10), "R": ("L", 100)}[vary]
    head = (f"| {vary} | Orig, no attack (ours) | Orig, attacked (ours) | Rec, no attack (ours) "
            f"| Rec, attacked (ours) | AUC (ours) | paper Rec / Orig no attack | paper Rec / Orig "
            f"attacked | paper AUC | run |\n|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for v in values:
        key = (v, fixed[1]) if vary == "L" else (fixed[1], v)
        orig, rec = cells.get(("orig", *key)), cells.get(("rec", *key))
        p = paper[v]
        ours = ["-"] * 5
        if orig:
            c = orig[2]
            ours[0], ours[1] = _acc(c, "defended_clean_accuracy"), _acc(c, "adversarial_accuracy")
            ours[4] = _ci(c["auc"], c["auc_ci95"])
        if rec:
            ours[2] = _acc(rec[2], "defended_clean_accuracy")
            ours[3] = _acc(rec[2], "adversarial_accuracy")
        n = f" (n={orig[2]['n_attacked']})" if orig else ""
        run = f"[{os.path.basename(orig[0])}]({orig[0]}/results.json)" if orig else "not run"
        rows.append(f"| {v}{n} | " + " | ".join(ours) + f" | {p[0]} / {p[1]} | {p[2]} / {p[3]} | "
                    f"{_paper(p[4])} | {run} |")
    return head + "\n".join(rows) + "\n"


def attack_note(cells: dict, root: str, dataset: str = "mnist") -> str:
    """What the sweeps' attacked images do to classifier F without the defense (the paper does
    not report it), read from the black-box run that made them, and the no-attack gap to the
    paper at the smallest R, which the attacked columns follow."""
    folders = sorted({c[2]["folder"] for c in cells.values() if c[2].get("folder")})
    notes = []
    for folder in folders:
        r = _load(os.path.join(root, folder, "results.json"))
        if not r:
            continue
        m = r["metrics"]
        notes.append(f"Without the defense, classifier F keeps "
                     f"{_ci(m['adversarial_accuracy'], m['adversarial_accuracy_ci95'])} "
                     f"n={m['num_images']} of these attacked images (clean "
                     f"{m['clean_accuracy']:.3f}; the substitute's accuracy "
                     f"{m['substitute_accuracy']:.3f}; [run]({folder}/results.json))."
                     + (" The attack is weak against F, so the attacked columns depend mostly on "
                        "how well the projection reconstructs." if
                        m["adversarial_accuracy_ci95"][0] > 0.5 else ""))
    paper_r = DATASETS[dataset]["R"][1]
    small = [k for k in cells if k[0] == "orig" and k[1] == 100 and k[2] in paper_r]
    if small:
        key = min(small, key=lambda k: k[2])
        acc = cells[key][2]["accuracy"]
        clean, attacked = acc["defended_clean_accuracy"], acc["adversarial_accuracy"]
        paper_clean, paper_attacked = _mean(paper_r[key[2]][1]), _mean(paper_r[key[2]][3])
        notes.append(f"At L=100, R={key[2]} our Orig accuracy is {clean:.3f} with no attack and "
                     f"{attacked:.3f} attacked, against the paper's {paper_clean:.3f} and "
                     f"{paper_attacked:.3f} ({clean - paper_clean:+.3f} and "
                     f"{attacked - paper_attacked:+.3f})"
                     + (": the attacked column's gap is the no-attack one's, so it comes from "
                        "the reconstruction. Why few restarts reconstruct so much better here "
                        "than in the paper is not known." if abs(
                            (clean - paper_clean) - (attacked - paper_attacked)) < 0.05 else "."))
    return " ".join(notes)


def timing_table(root: str) -> str:
    paths = sorted(glob.glob(os.path.join(root, "benchmarks", "results",
                                          "reconstruction_time*.json")))
    if not paths:
        return "Not measured yet: `python benchmarks/reconstruction_time.py`.\n"
    # The full grid when it exists, else the reduced one.
    path = next((p for p in paths if p.endswith("reconstruction_time.json")), paths[0])
    r = _load(path)
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from reconstruction_time import table
    spec = r["spec"]
    text = (f"{r['machine']['cpu']} ({r['machine']['cpu_count']} CPUs; load average "
            f"{r['machine']['load_average_at_start'][0]:.1f} at start, "
            f"{r['load_average_at_end'][0]:.1f} at end: {r['shared_machine_note']}), "
            f"batch {spec['batch']}, {spec['repeats']} timed call(s) per cell, "
            f"`{r['command']}` ([JSON]({os.path.relpath(path, root)})). Seconds per image "
            f"(mean±std over calls); in parentheses {r['paper_note']}.\n\n")
    for setting in spec["settings"]:
        text += f"**{setting}**\n\n" + table(r["cells"], setting, spec["L"], spec["R"]) + "\n\n"
    return text


def roc_figures(root: str, dataset: str = "mnist") -> str:
    """The ROC figure (one curve per eps, as the paper's Figs 4-5) of each roc_* run in the
    sweep folder whose roc.png exists, embedded; "" when there is none."""
    out = []
    for path in sorted(glob.glob(os.path.join(root, sweeps_dir(dataset), "roc_*", "roc.png"))):
        r = _load(os.path.join(os.path.dirname(path), "results.json"))
        if not r:
            continue
        s = r["settings"]
        n = sorted({c["n_attacked"] for c in r["curves"]})
        out.append(f"ROC curves per eps, black-box FGSM (L={s['rec_iters']}, R={s['rec_rr']}, "
                   f"{'/'.join(map(str, n))} attacked and as many clean test images per curve; "
                   f"the paper's Figs 4-5 are at L={DATASETS[dataset]['eps_auc_L']}):\n\n"
                   f"![ROC per eps]({os.path.relpath(path, root)})\n")
    return "\n".join(out)


def section(root: str = REPO, dataset: str = "mnist") -> str:
    """The Markdown of the detection and L / R sweep sections of one data set (MNIST: Figs 4,
    Tables 8 and 10, then Table 13, which covers both data sets; Fashion-MNIST: Fig 5, Tables 9
    and 11)."""
    spec = DATASETS[dataset]
    cells = sweep_cells(root, dataset)
    png = os.path.join(sweeps_dir(dataset), "sweeps.png")
    (l_table, l_paper), (r_table, r_paper) = spec["L"], spec["R"]
    env = "" if dataset == "mnist" else f"DATASET={dataset} "
    auc = spec["eps_auc"]
    missing = [f"{e:.2f}" for e, a in auc.items() if a is None]
    out = [f"## {spec['name']}: detection by the reconstruction error (Figs 4-5)\n",
           "The statistic is the per-pixel MSE of the projection; an input is flagged when it "
           "exceeds a threshold chosen on clean validation images for the target false positive "
           "rate (`--detect_fpr`, 0.05). Negatives: the clean test images of the same indices. "
           "AUC with a percentile bootstrap 95% interval, rates with Wilson intervals. White-box "
           "rows reuse the per-example MSEs of the white-box runs (same generator, L, R). "
           f"The paper reports AUCs only for black-box FGSM ({spec['name']}, "
           f"L={spec['eps_auc_L']}, R=10: "
           + ", ".join(f"eps {e:g} {_paper(a)}" for e, a in auc.items() if a)
           + (f"; no eps {', '.join(missing)} entry" if missing else "")
           + f"). Command: `python main.py --flagfile=flags/{dataset}.cfg --mode=detect "
           "--model=F --num_tests=200 [--adv_sources=<blackbox run dirs>]`; black-box FGSM at "
           f"each eps: `{env}scripts/run_sweeps.sh blackbox` then `{env}scripts/run_sweeps.sh "
           "eps`; ROC curves: `roc.png` in each run folder.\n",
           detection_table(root, dataset),
           roc_figures(root, dataset),
           f"\n## Tables {l_table.split()[1]} and {r_table.split()[1]}: {spec['name']}, model F, "
           "black-box FGSM eps 0.3 (substitute E), varying L and R\n",
           "One detect run per (L, R) gives the accuracy of classifier F on reconstructions of "
           "clean and attacked test images (Wilson 95%) and the detection AUC (bootstrap 95%). "
           f"Paper values are mean±std as printed; paper AUCs are the Figs 4-5 legends. "
           f"Command: `{sweep_cmd(dataset)}`"
           + (f"; plot: ![accuracy and AUC vs L and R]({png})" if os.path.isfile(
               os.path.join(root, png)) else "") + ".\n",
           f"**{l_table} (R = 10)**\n", sweep_table(cells, tuple(l_paper), "L", l_paper),
           f"\n**{r_table} (L = 100)**\n", sweep_table(cells, tuple(r_paper), "R", r_paper),
           attack_note(cells, root, dataset) + "\n"]
    if dataset == "mnist":
        out += ["\n## Table 13: reconstruction time\n", timing_table(root)]
    return "\n".join(out)


def plot(root: str = REPO, path: str | None = None, dataset: str = "mnist") -> str | None:
    """Accuracy (Orig/Rec, no attack/attacked) and AUC vs L and vs R, ours beside the paper's,
    as one PNG. Returns its path, or None when no sweep run exists."""
    spec = DATASETS[dataset]
    cells = sweep_cells(root, dataset)
    if not cells:
        return None
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=110, sharey="row")
    for col, (vary, values, paper, fixed) in enumerate(
            [("L", tuple(spec["L"][1]), spec["L"][1], 10),
             ("R", tuple(spec["R"][1]), spec["R"][1], 100)]):
        def key(v):
            return (v, fixed) if vary == "L" else (fixed, v)
        for clf, style in (("orig", "-"), ("rec", "--")):
            for metric, name, color in (("defended_clean_accuracy", "no attack", "C0"),
                                        ("adversarial_accuracy", "attacked", "C3")):
                xs = [v for v in values if (clf, *key(v)) in cells]
                if not xs:
                    continue
                ys = [cells[(clf, *key(v))][2]["accuracy"][metric] for v in xs]
                axes[0, col].plot(xs, ys, style, marker="o", color=color,
                                  label=f"ours, {clf.capitalize()}, {name}")
        for i, (name, color) in enumerate([("Orig, no attack", "C0"), ("Orig, attacked", "C3")]):
            ys = [_mean(paper[v][1 + 2 * i]) for v in values]
            axes[0, col].plot(values, ys, ":", marker="x", color=color, alpha=0.6,
                              label=f"paper, {name}")
        xs = [v for v in values if ("orig", *key(v)) in cells]
        axes[1, col].plot(xs, [cells[("orig", *key(v))][2]["auc"] for v in xs], "-o", color="C2",
                          label="ours")
        pv = [(v, paper[v][4]) for v in values if paper[v][4] is not None]
        axes[1, col].plot([v for v, _ in pv], [a for _, a in pv], ":x", color="C2", alpha=0.6,
                          label="paper (Figs 4-5 legend)")
        for row in (0, 1):
            axes[row, col].set_xscale("log")
            axes[row, col].set_xticks(values, [str(v) for v in values])
            axes[row, col].minorticks_off()
            axes[row, col].grid(True, color="0.9")
        axes[1, col].set_xlabel(f"{vary} ({'R = 10' if vary == 'L' else 'L = 100'})")
        axes[0, col].legend(fontsize=7)
        axes[1, col].legend(fontsize=7)
    axes[0, 0].set_ylabel("accuracy on reconstructions")
    axes[1, 0].set_ylabel("detection AUC (MSE)")
    fig.suptitle(f"{spec['name']}, classifier F, black-box FGSM eps 0.3 (substitute E)",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path = path or os.path.join(root, sweeps_dir(dataset), "sweeps.png")
    write_bytes_atomic(path, buf.getvalue())
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", action="store_true", help="write the sweep PNG first")
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    args = parser.parse_args()
    if args.plot:
        print(f"<!-- plot: {plot(dataset=args.dataset) or 'no sweep runs yet'} -->")
    print(section(dataset=args.dataset))


if __name__ == "__main__":
    main()
