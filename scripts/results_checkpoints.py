"""The "Shipped checkpoints" section of RESULTS.md: every checkpoints/<dataset>/<name>/ with
what it was trained on and its accuracy, read from its manifest.json (written by the training
mode that made it), so the accuracies quoted in the README are traceable.

    python scripts/results_checkpoints.py        # print the Markdown

`section(checkpoints_dir)` returns the Markdown (scripts/make_results.py includes it). A
classifier's test accuracy is on the whole test split (train_classifier evaluates every test
image), so its sample size is the split's size; a Defense-GAN-Rec classifier also has its
accuracy on reconstructions of the first validation images (the number is in its manifest).
"""

import argparse
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from defense_gan import stats  # noqa: E402

DATASETS = ("mnist", "fashion_mnist", "celeba")


def load_manifests(folder: str) -> list:
    """(name, manifest) of every checkpoint folder folder/<name> (a data set's checkpoints),
    sorted by name. A manifest.json that cannot be read or parsed stops the script with an
    error naming it: a shipped checkpoint must not drop out of RESULTS.md unnoticed."""
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*", "manifest.json"))):
        try:
            with open(path) as f:
                out.append((os.path.basename(os.path.dirname(path)), json.load(f)))
        except (OSError, ValueError) as err:
            sys.exit(f"error: cannot read checkpoint manifest '{path}' ({err})")
    return out


def trained_on(m: dict) -> str:
    """What a classifier manifest says it was trained on."""
    rec = m.get("reconstructions")
    if rec:
        p = rec.get("projection", {})
        text = "reconstructions of the training images (Defense-GAN-Rec)"
        if p:
            text += f": L={p.get('rec_iters')}, R={p.get('rec_rr')}, {rec.get('precision')}"
            if p.get("rec_prune_at"):
                text += f", early stop at {p['rec_prune_at']:g} keeping {p.get('rec_keep')}"
        return text
    if m.get("adversarially_trained"):
        return f"clean + FGSM eps {m.get('adv_train_eps'):g} (adversarial training)"
    return "clean training images"


def accuracy(value, n) -> str:
    if value is None:
        return "·"
    return stats.format_accuracy(int(round(value * n)), n)


def classifier_rows(manifests: list, test_images: int) -> list:
    rows = []
    for name, m in manifests:
        if m.get("kind") != "classifier":
            continue
        metrics = m.get("metrics", {})
        rec_n = metrics.get("validation_rec_images")
        rec = accuracy(metrics.get("validation_rec_accuracy"), rec_n) if rec_n else "·"
        rows.append(f"| `{name}` | {m.get('model')} | {trained_on(m)} | {m.get('steps')} | "
                    f"{accuracy(metrics.get('test_accuracy'), test_images)} | {rec} |")
    return rows


def other_rows(manifests: list) -> list:
    rows = []
    for name, m in manifests:
        kind, metrics = m.get("kind"), m.get("metrics", {})
        if kind == "generator":
            what = (f"{m.get('iterations')} generator iterations; critic Wasserstein estimate "
                    f"{metrics.get('validation_wasserstein')} on "
                    f"{metrics.get('validation_images')} validation images")
        elif kind == "magnet":
            what = (f"{m.get('epochs')} epochs; thresholds at FPR {m.get('fpr')} on "
                    f"{metrics.get('validation_images')} validation images")
        else:
            continue
        hours = m.get("wall_clock_seconds", 0) / 3600
        rows.append(f"| `{name}` | {kind} | {what} | {hours:.1f} h on "
                    f"{m.get('environment', {}).get('cpu', '?')} |")
    return rows


def section(checkpoints_dir: str, test_images=None) -> str:
    """The Markdown section; test_images: {dataset: size of its test split} (default: read
    from the data, for the datasets that have shipped classifiers)."""
    parts = ["## Shipped checkpoints", "",
             "Read from each `checkpoints/<dataset>/<name>/manifest.json` "
             "(`python scripts/results_checkpoints.py`). A classifier's test accuracy is on "
             "the whole test split; Defense-GAN-Rec classifiers also give their accuracy on "
             "reconstructions of validation images (the projection of their training set).",
             ""]
    found = False
    for dataset in DATASETS:
        manifests = load_manifests(os.path.join(checkpoints_dir, dataset))
        if not manifests:
            continue
        found = True
        parts += [f"### {dataset}", ""]
        if any(m.get("kind") == "classifier" for _, m in manifests):
            if test_images is None or dataset not in test_images:
                from defense_gan import data
                n = len(data.load(dataset).x_test)
            else:
                n = test_images[dataset]
            parts += ["| checkpoint | model | trained on | steps | test accuracy | "
                      "accuracy on validation reconstructions |",
                      "|---|---|---|---|---|---|", *classifier_rows(manifests, n), ""]
        rows = other_rows(manifests)
        if rows:
            parts += ["| checkpoint | kind | training | wall clock |", "|---|---|---|---|",
                      *rows, ""]
    return "\n".join(parts) if found else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=os.path.join(REPO, "checkpoints"))
    print(section(parser.parse_args().checkpoints))


if __name__ == "__main__":
    main()
