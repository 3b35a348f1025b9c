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

LS = (25, 50, 100, 200, 400, 800, 1600)
RS = (1, 2, 5, 10, 20)
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
SWEEPS = os.path.join("results", "mnist", "sweeps")
DETECT = os.path.join("results", "mnist", "detect")
SWEEP_CMD = "scripts/run_sweeps.sh"


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


def _paper(v):
    return "-" if v is None else str(v)


def detection_table(root: str) -> str:
    """One row per curve of every detect run under results/mnist/detect, and of the ROC run
    per eps under results/mnist/sweeps (roc_*: there it shares the sweep's projection cache)."""
    rows = []
    paths = sorted(glob.glob(os.path.join(root, DETECT, "*", "results.json"))) + sorted(
        glob.glob(os.path.join(root, SWEEPS, "roc_*", "results.json")))
    for path in paths:
        r = _load(path)
        if not r:
            continue
        s, t = r["settings"], r["threshold"]
        run = os.path.relpath(os.path.dirname(path), root)
        for c in r["curves"]:
            rows.append(
                f"| {c['label']} | {s['rec_iters']} | {s['rec_rr']} | {c['n_attacked']} | "
                f"{_ci(c['auc'], c['auc_ci95'])} | {paper_auc(c['label'])} | "
                f"{_ci(c['detection_rate'], c['detection_rate_ci95'])} | "
                f"{_ci(c['test_clean_fpr'], c['test_clean_fpr_ci95'])} | "
                f"{t['target_fpr']:g} on {t['validation_n']} | "
                f"[{os.path.basename(run)}]({run}/results.json) |")
        if not r["curves"]:
            rows.append(f"| (none: {r['attacks_available']}) | {s['rec_iters']} | {s['rec_rr']} "
                        f"| - | - | - | - | {_ci(t['test_clean_fpr'], t['test_clean_fpr_ci95'])} | "
                        f"{t['target_fpr']:g} on {t['validation_n']} | {run} |")
    if not rows:
        return ("No detect run yet: `python main.py --mode=detect --model=F --num_tests=200`.\n")
    return ("| attack (model F) | L | R | n | AUC [bootstrap 95%] | paper AUC (L=400) | "
            "detected at the threshold [Wilson 95%] | clean test flagged | target FPR on "
            "validation images | run |\n|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def paper_auc(label: str) -> str:
    """The Fig 4 legend's AUC for a black-box FGSM curve of that eps, else '-' (the paper has
    no AUC for white-box attacks)."""
    if not label.startswith("black-box FGSM eps "):
        return "-"
    eps = float(label.split("eps ")[1].split()[0].rstrip(","))
    return _paper(PAPER_EPS_AUC.get(round(eps, 2)))


def sweep_cells(root: str) -> dict:
    """{(classifier 'orig'|'rec', L, R): (results.json, its eps-0.3 curve)}."""
    cells = {}
    for path in glob.glob(os.path.join(root, SWEEPS, "*", "results.json")):
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


def attack_note(cells: dict, root: str) -> str:
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
    small = [k for k in cells if k[0] == "orig" and k[1] == 100 and k[2] in PAPER_TABLE10]
    if small:
        key = min(small, key=lambda k: k[2])
        acc = cells[key][2]["accuracy"]
        clean, attacked = acc["defended_clean_accuracy"], acc["adversarial_accuracy"]
        paper_clean, paper_attacked = (float(PAPER_TABLE10[key[2]][i].split("±")[0])
                                       for i in (1, 3))
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


def section(root: str = REPO) -> str:
    """The Markdown of the three sections (detection, Tables 8 and 10, Table 13)."""
    cells = sweep_cells(root)
    png = os.path.join(SWEEPS, "sweeps.png")
    out = ["## Detection by the reconstruction error (Figs 4-5)\n",
           "The statistic is the per-pixel MSE of the projection; an input is flagged when it "
           "exceeds a threshold chosen on clean validation images for the target false positive "
           "rate (`--detect_fpr`, 0.05). Negatives: the clean test images of the same indices. "
           "AUC with a percentile bootstrap 95% interval, rates with Wilson intervals. White-box "
           "rows reuse the per-example MSEs of the white-box runs (same generator, L, R). "
           "The paper reports AUCs only for black-box FGSM (MNIST, L=400, R=10: "
           + ", ".join(f"eps {e:g} {_paper(a)}" for e, a in PAPER_EPS_AUC.items() if a)
           + "; no eps 0.30 entry). Command: `python main.py --mode=detect --model=F "
           "--num_tests=200 [--adv_sources=<blackbox run dirs>]`; black-box FGSM at each eps: "
           "`scripts/run_sweeps.sh blackbox` then `scripts/run_sweeps.sh eps`; ROC curves: "
           "`roc.png` in each run folder.\n",
           detection_table(root),
           "\n## Tables 8 and 10: MNIST, model F, black-box FGSM eps 0.3 (substitute E), "
           "varying L and R\n",
           "One detect run per (L, R) gives the accuracy of classifier F on reconstructions of "
           "clean and attacked test images (Wilson 95%) and the detection AUC (bootstrap 95%). "
           "Paper values are mean±std as printed; paper AUCs are the Fig 4 legends. "
           f"Command: `{SWEEP_CMD}`"
           + (f"; plot: ![accuracy and AUC vs L and R]({png})" if os.path.isfile(
               os.path.join(root, png)) else "") + ".\n",
           "**Table 8 (R = 10)**\n", sweep_table(cells, LS, "L", PAPER_TABLE8),
           "\n**Table 10 (L = 100)**\n", sweep_table(cells, RS, "R", PAPER_TABLE10),
           attack_note(cells, root) + "\n",
           "\n## Table 13: reconstruction time\n", timing_table(root)]
    return "\n".join(out)


def plot(root: str = REPO, path: str | None = None) -> str | None:
    """Accuracy (Orig/Rec, no attack/attacked) and AUC vs L and vs R, ours beside the paper's,
    as one PNG. Returns its path, or None when no sweep run exists."""
    cells = sweep_cells(root)
    if not cells:
        return None
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=110, sharey="row")
    for col, (vary, values, paper, fixed) in enumerate(
            [("L", LS, PAPER_TABLE8, 10), ("R", RS, PAPER_TABLE10, 100)]):
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
            ys = [float(paper[v][1 + 2 * i].split("±")[0]) for v in values]
            axes[0, col].plot(values, ys, ":", marker="x", color=color, alpha=0.6,
                              label=f"paper, {name}")
        xs = [v for v in values if ("orig", *key(v)) in cells]
        axes[1, col].plot(xs, [cells[("orig", *key(v))][2]["auc"] for v in xs], "-o", color="C2",
                          label="ours")
        pv = [(v, paper[v][4]) for v in values if paper[v][4] is not None]
        axes[1, col].plot([v for v, _ in pv], [a for _, a in pv], ":x", color="C2", alpha=0.6,
                          label="paper (Fig 4 legend)")
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
    fig.suptitle("MNIST, classifier F, black-box FGSM eps 0.3 (substitute E)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path = path or os.path.join(root, SWEEPS, "sweeps.png")
    write_bytes_atomic(path, buf.getvalue())
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", action="store_true", help="write the sweep PNG first")
    args = parser.parse_args()
    if args.plot:
        print(f"<!-- plot: {plot() or 'no sweep runs yet'} -->")
    print(section())


if __name__ == "__main__":
    main()
