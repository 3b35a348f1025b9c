"""results.json, the Markdown results table, PNG grids and TensorBoard images of a run."""

import datetime
import json
import os

import numpy as np
import tensorflow as tf

from defense_gan import stats, summaries
from defense_gan.files import write_json_atomic, write_text_atomic
from defense_gan.rec_cache import portable

TABLE_HEADER = ("| model | attack | defense | gradient | L | R | images | clean acc | "
                "adversarial acc | defended clean acc | undefended adv acc | mean L2 | "
                "mean Linf | mean MSE clean / adv | images/s | results |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def load(results_dir: str) -> dict:
    """A run's results.json, or {} if it has none (or an unreadable one)."""
    try:
        with open(os.path.join(results_dir, "results.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def finished_unchanged(results_dir: str, timing: dict, batch_size: int, num_images: int,
                       settings: dict) -> bool:
    """True when `evaluation.evaluate` resumed every batch (`timing`) and results.json already
    holds these settings (up to the checkout's folders, so a clone elsewhere keeps the committed
    file): nothing was computed, so the results.json of the process that
    finished the run (its timing and environment) is kept and a rerun changes no file."""
    saved = load(results_dir).get("settings")
    return (timing["batches_resumed"] * batch_size >= num_images and saved is not None
            and portable(saved) == portable(settings))


def most_images(runs):
    """Of several results.json dicts for one table cell, the run with the most images (ties:
    the newest by its "written" time), or None for no runs: the rule of every RESULTS.md
    table."""
    return max(runs, key=lambda r: (r["metrics"]["num_images"], r.get("written", ""))) \
        if runs else None


def run_result(settings: dict, metrics: dict, timing: dict, flags: dict, argv) -> dict:
    """The fields every evaluation's results.json has: settings, metrics, projection speed
    (images_per_second over all batches, resumed ones too), timing, command, flags,
    environment."""
    import shlex
    from defense_gan.checkpoints import environment
    rate = (timing["projected_images"] / timing["projection_seconds"]
            if timing["projection_seconds"] else None)
    return {"settings": settings, "metrics": metrics, "images_per_second": rate,
            "timing": timing,
            "command": "python main.py " + " ".join(shlex.quote(a) for a in argv[1:]),
            "flags": flags, "environment": environment()}


def _mean(records, key):
    values = [r[key] for r in records if key in r]
    return float(np.mean(values)) if values else None


def _accuracy(records, key):
    if not records or key not in records[0]:
        return None
    return float(np.mean([r[key] == r["label"] for r in records]))


def _interval(records, key):
    if not records or key not in records[0]:
        return None
    correct = int(sum(r[key] == r["label"] for r in records))
    return list(stats.wilson_interval(correct, len(records)))


ACCURACY_KEYS = {
    "clean_accuracy": "pred_clean",
    "defended_clean_accuracy": "pred_clean_defended",
    "undefended_adversarial_accuracy": "pred_adv",
    "adversarial_accuracy_fresh_seed": "pred_adv_defended_fresh_seed",
}


def adversarial_correct(r: dict) -> bool:
    """Whether the defense handled example record `r`'s adversarial input: classified it
    correctly (after the projection or reformer when there is one) or, for a detecting
    defense, rejected it (MagNet's counting: a detected adversarial example is a success)."""
    if "pred_adv_defended" not in r:
        return r["pred_adv"] == r["label"]
    return r.get("rejected_adv", False) or r["pred_adv_defended"] == r["label"]


def _detection_metrics(records) -> dict:
    """For a detecting defense (records with rejected_clean / rejected_adv): the fractions
    rejected, the accuracy after reforming alone, and both with Wilson intervals."""
    n = len(records)
    counts = {
        "reformed_adversarial_accuracy": sum(r["pred_adv_defended"] == r["label"]
                                             for r in records),
        "rejected_adversarial_fraction": sum(r["rejected_adv"] for r in records),
        "rejected_clean_fraction": sum(r["rejected_clean"] for r in records),
    }
    out = {}
    for name, c in counts.items():
        out[name] = c / n
        out[f"{name}_ci95"] = list(stats.wilson_interval(int(c), n))
    return out


def summarize(records, defense: str) -> dict:
    """Accuracies and means over per-example records (see evaluation.py).

    clean_accuracy: the evaluated classifier on clean images (no projection).
    adversarial_accuracy: the defense on adversarial images: classifier(P(x_adv)) for
      defense_gan, else classifier(x_adv).
    defended_clean_accuracy: classifier(P(x)) on clean images (Defense-GAN only); the release's
      white-box Defense-GAN column in effect measured this (its attack gradient vanished).
    undefended_adversarial_accuracy: classifier(x_adv) without projection.
    adversarial_accuracy_fresh_seed: classifier(P(x_adv)) with projection restarts the
      attacker never saw (iterative attacks through BPDA only; else None).
    mean_l2_changed, mean_l2_sq_changed: mean L2 and mean squared L2 over the images the
      attack changed (l2 > 0), None if none.
    Each accuracy `<name>` has `<name>_ci95`: its 95% Wilson interval [low, high] over
    num_images (None where the accuracy is None).
    A detecting defense (MagNet; records with rejected_adv) counts as MagNet does: an
    adversarial input rejected by its detectors is handled correctly, a clean input rejected
    is not (adversarial_accuracy, defended_clean_accuracy); `reformed_adversarial_accuracy`
    (the classifier on the reformed input, detectors ignored), `rejected_adversarial_fraction`
    and `rejected_clean_fraction` (the false-positive rate on test images) are added.
    """
    gan = bool(records) and "pred_adv_defended" in records[0]  # a defense transformed inputs
    keys = dict(ACCURACY_KEYS, adversarial_accuracy="pred_adv_defended" if gan else "pred_adv")
    if not gan:
        keys.pop("defended_clean_accuracy")
    intervals = {f"{name}_ci95": _interval(records, key) for name, key in keys.items()}
    if records and "rejected_adv" in records[0]:
        return _summarize_detecting(records, intervals)
    return intervals | {
        "num_images": len(records),
        "clean_accuracy": _accuracy(records, "pred_clean"),
        "adversarial_accuracy": _accuracy(records, "pred_adv_defended" if gan else "pred_adv"),
        "defended_clean_accuracy": _accuracy(records, "pred_clean_defended") if gan else None,
        "undefended_adversarial_accuracy": _accuracy(records, "pred_adv"),
        "adversarial_accuracy_fresh_seed": _accuracy(records, "pred_adv_defended_fresh_seed"),
        "mean_l2": _mean(records, "l2"),
        "mean_linf": _mean(records, "linf"),
        "mean_mse_clean": _mean(records, "mse_clean"),
        "mean_mse_adv": _mean(records, "mse_adv"),
        "mean_mse_adv_fresh_seed": _mean(records, "mse_adv_fresh_seed"),
        "changed_fraction": float(np.mean([r["l2"] > 0 for r in records])) if records else None,
        # Over the changed images only (CW / latent return unchanged images where they fail).
        "mean_l2_changed": _mean([r for r in records if r["l2"] > 0], "l2"),
        "mean_l2_sq_changed": (float(np.mean([r["l2"] ** 2 for r in records if r["l2"] > 0]))
                               if any(r["l2"] > 0 for r in records) else None),
    }


def _summarize_detecting(records, intervals: dict) -> dict:
    n = len(records)
    handled = sum(adversarial_correct(r) for r in records)
    clean_ok = sum((not r["rejected_clean"]) and r["pred_clean_defended"] == r["label"]
                   for r in records)
    return intervals | _detection_metrics(records) | {
        "num_images": n,
        "clean_accuracy": _accuracy(records, "pred_clean"),
        "adversarial_accuracy": handled / n,
        "adversarial_accuracy_ci95": list(stats.wilson_interval(int(handled), n)),
        "defended_clean_accuracy": clean_ok / n,
        "defended_clean_accuracy_ci95": list(stats.wilson_interval(int(clean_ok), n)),
        "undefended_adversarial_accuracy": _accuracy(records, "pred_adv"),
        "adversarial_accuracy_fresh_seed": None,
        "mean_l2": _mean(records, "l2"),
        "mean_linf": _mean(records, "linf"),
        "mean_mse_clean": None,
        "mean_mse_adv": None,
        "mean_mse_adv_fresh_seed": None,
        "mean_detector_score_clean": _mean(records, "detector_score_clean"),
        "mean_detector_score_adv": _mean(records, "detector_score_adv"),
        "changed_fraction": float(np.mean([r["l2"] > 0 for r in records])),
    }


def _fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def table_row(result: dict, run_name: str) -> str:
    """One Markdown row (TABLE_HEADER's columns) for a run's results.json."""
    s, m = result["settings"], result["metrics"]
    gan = s["defense"] == "defense_gan"
    gradient = s["gradient"] if s["defense"] in ("defense_gan", "magnet") else "-"
    mse = ("-" if m["mean_mse_clean"] is None else
           f"{m['mean_mse_clean']:.4f} / {m['mean_mse_adv']:.4f}")
    return (f"| {s['model']} | {s['attack']} | {s['defense']} | "
            f"{gradient} | {s['rec_iters'] if gan else '-'} | "
            f"{s['rec_rr'] if gan else '-'} | {m['num_images']} | "
            f"{_fmt(m['clean_accuracy'])} | {_fmt(m['adversarial_accuracy'])} | "
            f"{_fmt(m['defended_clean_accuracy'])} | "
            f"{_fmt(m['undefended_adversarial_accuracy'])} | {_fmt(m['mean_l2'], 3)} | "
            f"{_fmt(m['mean_linf'], 3)} | {mse} | {_fmt(result.get('images_per_second'), 2)} | "
            f"{run_name} |\n")


def rebuild_index(parent: str) -> str:
    """Rewrite <parent>/index.md from every <parent>/<run>/results.json, oldest first: one row
    per run folder, so a rerun replaces its row instead of adding one. Returns the path."""
    rows = []
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name, "results.json")
        if not os.path.isfile(path):
            continue
        try:
            with open(path) as f:
                result = json.load(f)
            rows.append((result.get("written", ""), name, table_row(result, name)))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"[results] skipping {path} in index.md: {e}", flush=True)
    table_path = os.path.join(parent, "index.md")
    write_text_atomic(table_path, TABLE_HEADER + "".join(row for *_, row in sorted(rows)))
    return table_path


def write(results_dir: str, result: dict, writer_images=None, pixel_range=(0.0, 1.0)) -> None:
    """Write results.json, the example grid PNG (+ TensorBoard) of `writer_images` (rows of
    images in pixel_range) and rebuild the index.md table beside results_dir."""
    result = dict(result, written=datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"))
    write_json_atomic(os.path.join(results_dir, "results.json"), result)
    if writer_images:
        grid = summaries.image_grid(np.concatenate([row[:10] for row in writer_images]),
                                    rows=len(writer_images), pixel_range=pixel_range)
        summaries.write_png(os.path.join(results_dir, "examples.png"), grid)
        writer = tf.summary.create_file_writer(os.path.join(results_dir, "logs"))
        summaries.image(writer, 0, "clean_adversarial_reconstruction", grid)
        summaries.scalars(writer, 0, {k: v for k, v in result["metrics"].items()
                                      if isinstance(v, float)})
        writer.flush()
    rebuild_index(os.path.dirname(os.path.abspath(results_dir)))
