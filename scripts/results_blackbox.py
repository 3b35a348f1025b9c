"""The black-box sections of RESULTS.md (the paper's Tables 1, 2 and 3), beside the paper.

    python scripts/results_blackbox.py [--dataset mnist|fashion_mnist]   # print the Markdown

`section(root, dataset)` returns the Markdown (scripts/make_results.py includes it). Every
"ours" cell is read from a results.json that `python main.py --mode=blackbox ...` wrote under
results/<dataset>/blackbox/ and links to it; cells with no run show `·` and the script that
fills them. Paper numbers: Tables 1-3 of arXiv:1805.06605v2 (../shared/reference/PAPER.md).
"""

import argparse
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from defense_gan import results, stats  # noqa: E402
from defense_gan.config import Config  # noqa: E402

ROWS = ("A/B", "A/E", "B/B", "B/E", "C/B", "C/E", "D/B", "D/E")
# (column title, key); the paper's values are in this order.
COLUMNS = (("No attack", "no_attack"), ("No defense", "none"), ("Defense-GAN-Rec", "rec"),
           ("Defense-GAN-Orig", "orig"), ("MagNet", "magnet"), ("Adv. Tr. 0.3", "adv0.3"),
           ("Adv. Tr. 0.15", "adv0.15"))
# Paper Tables 1 (MNIST) and 2 (F-MNIST): FGSM black-box eps 0.3, Defense-GAN L=200, R=10.
PAPER = {
    "mnist": {"A/B": (0.9970, 0.6343, 0.9312, 0.9282, 0.6937, 0.9654, 0.6223),
              "A/E": (0.9970, 0.5432, 0.9139, 0.9221, 0.6710, 0.9668, 0.9327),
              "B/B": (0.9618, 0.2816, 0.9057, 0.9105, 0.5687, 0.2092, 0.3441),
              "B/E": (0.9618, 0.2128, 0.8841, 0.8892, 0.4627, 0.1120, 0.3354),
              "C/B": (0.9959, 0.6648, 0.9357, 0.9322, 0.7571, 0.9834, 0.9208),
              "C/E": (0.9959, 0.8050, 0.9223, 0.9182, 0.6760, 0.9843, 0.9755),
              "D/B": (0.9920, 0.4641, 0.9272, 0.9323, 0.6817, 0.7667, 0.8514),
              "D/E": (0.9920, 0.3931, 0.9164, 0.9155, 0.6073, 0.7676, 0.7129)},
    "fashion_mnist": {"A/B": (0.9346, 0.5131, 0.586, 0.5803, 0.5404, 0.7393, 0.6600),
                      "A/E": (0.9346, 0.3653, 0.4790, 0.4616, 0.3311, 0.6945, 0.5638),
                      "B/B": (0.7470, 0.4017, 0.4940, 0.5530, 0.3812, 0.3177, 0.3560),
                      "B/E": (0.7470, 0.3123, 0.3720, 0.4187, 0.3119, 0.2617, 0.2453),
                      "C/B": (0.9334, 0.2635, 0.5289, 0.6079, 0.4664, 0.7791, 0.6838),
                      "C/E": (0.9334, 0.2066, 0.4871, 0.4625, 0.3016, 0.7504, 0.6655),
                      "D/B": (0.8923, 0.4541, 0.5779, 0.5853, 0.5478, 0.6172, 0.6395),
                      "D/E": (0.8923, 0.2543, 0.4007, 0.4730, 0.3396, 0.5093, 0.4962)}}
# Paper Table 3: model F, substitute E, Defense-GAN-Rec at L=400, R=10, mean±std as printed.
PAPER_TABLE3 = {"mnist": {0.10: "0.9864±0.0011", 0.15: "0.9836±0.0026", 0.20: "0.9772±0.0019",
                          0.25: "0.9641±0.0001", 0.30: "0.9307±0.0034"},
                "fashion_mnist": {0.10: "0.8844±0.0017", 0.15: "0.8267±0.0065",
                                  0.20: "0.7492±0.0170", 0.25: "0.6384±0.0159",
                                  0.30: "0.5126±0.0096"}}
# The oracle projection of the tables' substitutes: what the flags scripts/run_blackbox_tables.sh
# gives every run make of the defaults (L, R and early stop from --oracle_fast, bf16 from
# --oracle_precision=bfloat16). A row's columns share one substitute only when its oracle is
# the same, so runs with another oracle projection are listed under the tables, not in them.
TABLE_ORACLE = {**Config(mode="blackbox", oracle_precision="bfloat16").oracle_projection(),
                "rec_keep": Config().rec_keep}
TITLES = {"mnist": ("Table 1", "MNIST"), "fashion_mnist": ("Table 2", "Fashion-MNIST")}
SCRIPTS = {"mnist": "scripts/run_blackbox_tables.sh",
           "fashion_mnist": "DATASET=fashion_mnist scripts/run_blackbox_tables.sh"}


def load_runs(root: str, dataset: str) -> list:
    runs = []
    for path in sorted(glob.glob(os.path.join(root, "results", dataset, "blackbox", "*",
                                              "results.json"))):
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError):
            continue
        r["path"] = os.path.relpath(os.path.dirname(path), root)
        runs.append(r)
    return runs


def table_oracle(run) -> bool:
    """Whether the run's substitute was labelled with the tables' oracle projection."""
    o = run["settings"]["oracle"]
    return all(o.get(k, "float32" if k == "precision" else None) == v
               for k, v in TABLE_ORACLE.items())


def column_of(run, release_variants: bool = False) -> str | None:
    """The Table 1 column a run fills (None: not a Table 1 run, e.g. another L, labels or
    oracle projection, or one reproducing a release bug (`release_bugs`) unless
    `release_variants`)."""
    s = run["settings"]
    if (s["oracle"]["labels"] not in ("defended", "release_untrained") or not table_oracle(run)
            or (release_bugs(run) and not release_variants)):
        return None
    defense = s["defense"]
    if defense == "defense_gan":
        if (s["rec_iters"], s["rec_rr"]) != (200, 10) or s.get("rec_prune_at"):
            return None
        return "rec" if s.get("classifier_variant") == "rec" else "orig"
    if defense == "adv_tr":
        return f"adv{s.get('adv_train_eps', 0.15):g}"
    return defense if defense in ("none", "magnet") else None


def augmentation_of(run) -> str | None:
    """The substitute's non-default Jacobian augmentation (--sub_augmentation), else None."""
    text = run["settings"]["substitute"].get("augmentation")
    return text.split(":")[0] if text else None


def release_bugs(run) -> list:
    """Which of the release's black-box bugs the run reproduces (empty for the tables' runs):
    its Jacobian augmentation (--sub_augmentation) and its untrained generator labelling the
    none / adv_tr substitutes (--blackbox_labels=release_untrained)."""
    bugs = []
    if augmentation_of(run):
        bugs.append(f"the release's augmentation ({augmentation_of(run)})")
    if run["settings"]["oracle"]["labels"] == "release_untrained":
        bugs.append("labels through an untrained generator (release_untrained)")
    return bugs


def eps_of(run) -> float:
    return round(float(run["settings"]["attack_settings"]["eps"]), 2)


def accuracy(run, key="adversarial_accuracy") -> str:
    return stats.format_metric(run["metrics"], key)


def link(run) -> str:
    return f"[run]({run['path']}/results.json)"


def oracle_text(run) -> str:
    """How the substitute's labels were made, from the run's settings.oracle."""
    o = run["settings"]["oracle"]
    if o.get("rec_iters") is None:
        return f"{o['labelling_defense']}"
    text = f"L={o['rec_iters']}, R={o['rec_rr']}, {o.get('precision', 'float32')}"
    if o.get("rec_prune_at"):
        text += f", early stop at {o['rec_prune_at']:g} keeping {o.get('rec_keep')}"
    return text


def row_of(run) -> str:
    return f"{run['settings']['model']}/{run['settings']['substitute']['model']}"


def table_cells(runs) -> dict:
    """{(row, column): [runs]} of the eps-0.3 runs that fill a Table 1 cell."""
    cells = {}
    for r in runs:
        col = column_of(r)
        if col is not None and eps_of(r) == 0.3:
            cells.setdefault((row_of(r), col), []).append(r)
    return cells


def table(runs, dataset: str) -> list:
    """Markdown lines of the Table 1/2 layout: one row per classifier/substitute pair, each
    cell `ours [Wilson 95%] n=N (paper)` with a link to its results.json."""
    cells = table_cells(runs)
    paper = PAPER[dataset]
    lines = ["| classifier/substitute | substitute accuracy | " + " | ".join(
        t for t, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for row in ROWS:
        picked = {col: results.most_images(cells.get((row, col), [])) for _, col in COLUMNS[1:]}
        # No attack: the plain classifier on the clean images (any run of the plain one).
        plain = next((picked[c] for c in ("none", "orig", "magnet") if picked[c]), None)
        out = [f"{accuracy(plain, 'clean_accuracy')} ({paper[row][0]:.3f})" if plain
               else f"· ({paper[row][0]:.3f})"]
        for i, (_, col) in enumerate(COLUMNS[1:], start=1):
            r = picked[col]
            reformed = (f" / reformed only {accuracy(r, 'reformed_adversarial_accuracy')}"
                        if r and r["metrics"].get("reformed_adversarial_accuracy") is not None
                        else "")
            out.append(f"{accuracy(r)}{reformed} ({paper[row][i]:.3f}) {link(r)}" if r
                       else f"· ({paper[row][i]:.3f})")
        sub = next((picked[c] for c in ("none", "orig", "magnet", "rec", "adv0.3", "adv0.15")
                    if picked[c]), None)
        lines.append(f"| {row} | {accuracy(sub, 'substitute_accuracy') if sub else '·'} | "
                     + " | ".join(out) + " |")
    return lines


def table3(runs, dataset: str) -> list:
    rec = [r for r in runs if r["settings"]["defense"] == "defense_gan"
           and r["settings"].get("classifier_variant") == "rec"
           and r["settings"]["model"] == "F" and r["settings"]["substitute"]["model"] == "E"
           and (r["settings"]["rec_iters"], r["settings"]["rec_rr"]) == (400, 10)
           and r["settings"]["oracle"]["labels"] == "defended" and table_oracle(r)
           and not release_bugs(r)]
    lines = ["| eps | Defense-GAN-Rec (ours) | paper (mean±std) | run |", "|---|---|---|---|"]
    for eps, value in PAPER_TABLE3[dataset].items():
        r = results.most_images([x for x in rec if eps_of(x) == eps])
        lines.append(f"| {eps:.2f} | {accuracy(r) if r else '·'} | {value} | "
                     f"{link(r) if r else 'not run'} |")
    return lines


def other_runs(runs, dataset: str) -> list:
    """Black-box runs outside the tables' protocol (e.g. target labels), listed as they are."""
    out = []
    for r in runs:
        in_table3 = (r["settings"]["defense"] == "defense_gan"
                     and r["settings"]["rec_iters"] == 400 and table_oracle(r))
        if (column_of(r) is not None and eps_of(r) == 0.3) or in_table3 or release_bugs(r):
            continue
        s = r["settings"]
        out.append(f"- {s['model']}/{s['substitute']['model']}, --defense={s['defense']}, "
                   f"labels: {s['oracle']['labels']} ({s['oracle']['labelling_defense']}"
                   f"{'' if s['oracle'].get('rec_iters') is None else ', ' + oracle_text(r)}), "
                   f"eps {eps_of(r):g}: {accuracy(r)} ({link(r)})")
    return out


def release_comparison(runs, dataset: str) -> list:
    """Runs that reproduce the release's black-box bugs (`release_bugs`), each beside the
    table cell it mirrors (same classifier, substitute, defense and oracle projection, without
    the bugs) and the paper's value."""
    by_cell = table_cells(runs)
    names = dict((col, title) for title, col in COLUMNS)
    out = []
    for r in runs:
        bugs = release_bugs(r)
        col = column_of(r, release_variants=True)
        if not bugs or col is None or eps_of(r) != 0.3:
            continue
        row = row_of(r)
        fixed = results.most_images(by_cell.get((row, col), []))
        paper = PAPER[dataset][row][[c for _, c in COLUMNS].index(col)]
        out.append(
            f"- {row} {names[col]}: {accuracy(r)} with {' and '.join(bugs)} (substitute "
            f"{accuracy(r, 'substitute_accuracy')}; {link(r)}), against "
            + (f"{accuracy(fixed)} without (substitute "
               f"{accuracy(fixed, 'substitute_accuracy')}; {link(fixed)})" if fixed
               else "no run without them yet")
            + f"; paper {paper:.3f}.")
    if not out:
        return []
    return ["", "**The release's substitute**: two bugs of the release's black-box code "
            "weakened the paper's substitutes. (1) The CleverHans `jacobian_augmentation` it "
            "used (late 2017, issue #321, fixed after the paper) overwrote every other point in "
            "place, so the substitute trains on duplicates and on changed points with stale "
            "labels (`--sub_augmentation=cleverhans2017`). (2) For No defense and Adv. Tr., "
            "blackbox() opens a new tf.Session in which CleverHans' model_train(init_all=False) "
            "initialises the generator afresh, so those substitutes were labelled through an "
            "untrained generator (our reading of the code; `--blackbox_labels="
            "release_untrained`). Runs reproducing them, beside the table cell without them:",
            "", *out]


def defense_gan_notes(runs) -> list:
    """Per Defense-GAN cell of the table, what its results.json says about where the gap to the
    undefended attack comes from: the same images' clean reconstructions, the reconstruction
    error of attacked and clean images, and the attack without the defense."""
    out, iterations = [], set()
    for r in runs:
        col = column_of(r)
        if col not in ("orig", "rec") or eps_of(r) != 0.3:
            continue
        m, s = r["metrics"], r["settings"]
        if m.get("mean_mse_adv") is None or m.get("defended_clean_accuracy") is None:
            continue
        name = "Defense-GAN-Rec" if col == "rec" else "Defense-GAN-Orig"
        generator = s["substitute"].get("oracle_checkpoints", {}).get("generator", {})
        if generator.get("iterations"):
            iterations.add(generator["iterations"])
        ratio = m["mean_mse_adv"] / m["mean_mse_clean"] if m.get("mean_mse_clean") else None
        out.append(
            f"- {s['model']}/{s['substitute']['model']} {name} ({m['num_images']} images): "
            f"attacked {accuracy(r)}; the same images' clean reconstructions "
            f"{accuracy(r, 'defended_clean_accuracy')}; without the defense the attack leaves "
            f"{accuracy(r, 'undefended_adversarial_accuracy')}; mean reconstruction MSE "
            f"{m['mean_mse_adv']:.4f} attacked, {m['mean_mse_clean']:.4f} clean"
            + (f" ({ratio:.1f}x)" if ratio else "") + ".")
    if not out:
        return []
    return ["", "Where the Defense-GAN cells come from (each run's results.json). A low "
            "attacked accuracy beside a high clean-reconstruction accuracy and a large "
            "attacked/clean MSE ratio means the projection removes the perturbation's pixels "
            "but lands on another class: the attacked image is off the generator's range "
            "(and detected, see the detection section), not reproduced. Known differences from "
            "the paper: our generator trained "
            + (" / ".join(f"{i:,}" for i in sorted(iterations)) or "fewer")
            + " iterations (the release 200,000), and our substitutes' FGSM transfers to the "
            "undefended classifiers more strongly than the paper's where the No defense cell is "
            "lower than the paper's. Two release bugs weakened the paper's substitutes (README, "
            "Black-box attack): CleverHans' Jacobian augmentation of late 2017 (issue #321; "
            "`--sub_augmentation=cleverhans2017` reproduces it) and, for the No defense and "
            "Adv. Tr. columns, a generator left untrained in the oracle's session (our reading "
            "of the code; `--blackbox_labels=release_untrained` reproduces it); runs with them "
            "are listed below.", "", *out]


def section(root: str = REPO, dataset: str = "mnist") -> str:
    runs = load_runs(root, dataset)
    number, name = TITLES[dataset]
    lines = [f"## {name} black-box ({number} layout; Table 3)", "",
             f"FGSM eps 0.3 crafted on a substitute trained by querying the defended model "
             f"(Papernot et al. 2017 as the release ran it: 150 initial test images, 6 rounds of "
             f"Jacobian augmentation, 4,650 label-only oracle queries), evaluated on the test "
             f"images after the first 150. Cells read `ours [95% Wilson interval] n=images "
             f"(paper)`; `·` is a run not done yet (`{SCRIPTS[dataset]}` fills the table, "
             f"row by row, resumable). Defense-GAN cells project at L=200, R=10, float32. "
             f"As in the release, the substitute of every column is labelled by the column's "
             f"classifier behind Defense-GAN (`--blackbox_labels=defended`, named in each "
             f"results.json); those oracle queries use a cheaper projection, given below. "
             f"No attack is the plain classifier on the clean evaluation images. MagNet "
             f"cells count as MagNet counts (an adversarial image its detectors reject is "
             f"handled), then `reformed only`: the classifier on the reformed image, detectors "
             f"ignored.", ""]
    lines += table(runs, dataset)
    lines += ["", "Oracle projection of every substitute in the tables (the labels of its "
              "4,650 queries): " + oracle_text({"settings": {"oracle": TABLE_ORACLE}})
              + "; black-box runs with another oracle projection are listed below the "
              "tables."]
    lines += defense_gan_notes(runs)
    lines += release_comparison(runs, dataset)
    lines += ["", "**Table 3** (model F, substitute E, Defense-GAN-Rec, L=400, R=10, FGSM "
              "black-box at each eps; 500 images per cell):", ""]
    lines += table3(runs, dataset)
    others = other_runs(runs, dataset)
    if others:
        lines += ["", "Other black-box runs (outside the tables' protocol):", "", *others]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=sorted(PAPER))
    args = parser.parse_args()
    print(section(REPO, args.dataset))


if __name__ == "__main__":
    main()
