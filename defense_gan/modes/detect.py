"""--mode=detect: detecting attacks by the reconstruction error (the paper's Figs 4-5).

The statistic is the per-pixel MSE of the projection, ||G(z*) - x||^2 / d; an input whose MSE
exceeds a threshold is flagged. The threshold is chosen on clean VALIDATION images (the first
--detect_val, default --num_tests) for the target false positive rate --detect_fpr; the test
images never choose it. For each attack ("source") the negatives are the clean test images of
the same indices as its attacked images (paired), the positives the attacked ones.

Sources of attacked images (at most --num_tests each, the first ones of each source):
- with --detect_whitebox (default): the white-box runs of --model through BPDA (FGSM,
  RAND+FGSM, CW) in results/<dataset>/whitebox whose projection matches (generator sha256, L,
  R, lr, precision, early stop); their per-example `mse_adv` are used as they are, nothing is
  projected again. Runs that do not match are skipped and listed in results.json.
- --adv_sources=dir1,dir2: run folders (e.g. black-box runs). A folder whose records match the
  projection gives its MSEs as they are; else its `adversarial.npz` (x_adv float32 [N, H, W, C],
  labels [N], indices [N] = test-set indices) is projected here, cached per batch (a killed
  run resumes). A folder with neither (records of another generator or other L/R and no
  adversarial.npz) is refused: one ROC never mixes projections.

Clean test and validation reconstructions come from the clean-image projection cache of
rec_cache.py (under <results parent>/.projection_cache), shared by every detect run there,
so a sweep run for a second classifier (Defense-GAN-Rec) projects nothing again.

Writes into --results_dir (default results/<dataset>/detect/<run>): results.json (per source:
AUC with a seeded bootstrap 95% interval, the detection rate at the threshold with its Wilson
interval, the clean test images' false positive rate, the accuracies of the classifier on the
reconstructions with Wilson intervals, n, L, R, the generator sha256, the source folders),
records/<source>.json (per-example records with the whitebox record keys) and roc.png (one
curve per source on one figure).
"""

import dataclasses
import json
import os
import shlex
import sys
import time

import numpy as np
import tensorflow as tf

from defense_gan import (classifiers, data, detection, files, gan, hardware, projection,
                         rec_cache, results, stats)
from defense_gan.checkpoints import environment, sha256_file
from defense_gan.config import REPO_ROOT, Config, ConfigError, parse_snapshots

WHITEBOX_ATTACKS = ("fgsm", "rand_fgsm", "cw")
ATTACK_NAMES = {"fgsm": "FGSM", "rand_fgsm": "RAND+FGSM", "cw": "CW-L2", "pgd": "PGD"}
RECORD_KEYS = ("index", "label", "pred_clean", "pred_adv", "pred_clean_defended",
               "pred_adv_defended", "mse_clean", "mse_adv")
ADVERSARIAL_NPZ = "adversarial.npz"


def run_name(cfg: Config) -> str:
    name = f"{cfg.model}_L{cfg.rec_iters}_R{cfg.rec_rr}"
    if cfg.rec_prune_at:
        name += f"_prune{cfg.rec_prune_at:g}k{cfg.rec_keep}"
    return f"{name}_n{cfg.num_tests}" + ("_bf16" if cfg.precision == "bfloat16" else "")


# --- which projection produced a run's MSEs ------------------------------------------------------

def projection_identity(generator_files: dict, cfg: Config, precision: str) -> dict:
    """What the MSE statistic depends on: generator weights, L, R, lr, precision, early stop."""
    return {"generator sha256": generator_files, "L (rec_iters)": cfg.rec_iters,
            "R (rec_rr)": cfg.rec_rr, "rec_lr": cfg.rec_lr, "precision": precision,
            "rec_prune_at": cfg.rec_prune_at,
            "rec_keep": cfg.rec_keep if cfg.rec_prune_at else None}


def run_identity(result: dict) -> dict:
    """The same fields read from a run's results.json (None where it does not say)."""
    s = result.get("settings", {})
    prune = s.get("rec_prune_at", 0.0) if "rec_iters" in s else None
    return {"generator sha256": s.get("checkpoints", {}).get("generator", {}).get("sha256"),
            "L (rec_iters)": s.get("rec_iters"), "R (rec_rr)": s.get("rec_rr"),
            "rec_lr": s.get("rec_lr"), "precision": s.get("precision"), "rec_prune_at": prune,
            "rec_keep": s.get("rec_keep") if prune else None}


def mismatch(mine: dict, theirs: dict) -> str | None:
    """None when the two projections are the same, else what differs (one phrase)."""
    for key, value in mine.items():
        if theirs.get(key) != value:
            if key == "generator sha256":
                return "another generator (sha256 differs)" if theirs.get(key) else \
                    "no generator sha256 in its results.json"
            return f"{key}={theirs.get(key)} (this run: {value})"
    return None


# --- sources of attacked images --------------------------------------------------------------

@dataclasses.dataclass
class Source:
    folder: str
    kind: str          # "records": MSEs read from its records; "projected": its npz projected here
    result: dict       # its results.json ({} if it has none)
    label: str = ""
    key: str = ""

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.folder))


def read_records(folder: str) -> list:
    """Every per-example record of a run (records/batch_*.json), sorted by index."""
    records_dir = os.path.join(folder, "records")
    out = []
    for name in sorted(os.listdir(records_dir)) if os.path.isdir(records_dir) else []:
        if name.startswith("batch_") and name.endswith(".json"):
            with open(os.path.join(records_dir, name)) as f:
                out.extend(json.load(f)["records"])
    return sorted(out, key=lambda r: r["index"])


def _records_usable(folder: str, result: dict, identity: dict, y_test) -> str | None:
    """None if the run's records give MSEs of this projection for test images named by their
    test-set index, else why not."""
    if not result:
        return "no results.json"
    why = mismatch(identity, run_identity(result))
    if why:
        return f"records made with {why}"
    records = read_records(folder)
    if not records:
        return "no records/"
    missing = [k for k in RECORD_KEYS + ("l2",) if k not in records[0]]
    if missing:
        return f"records without {', '.join(missing)}"
    index = np.array([r["index"] for r in records])
    if index.max() >= len(y_test) or np.any(y_test[index] != [r["label"] for r in records]):
        return "record indices that are not test-set indices (their labels differ)"
    return None


def _label(source: Source) -> str:
    s, flags = source.result.get("settings", {}), source.result.get("flags", {})
    attack = s.get("attack") or flags.get("attack") or "fgsm"
    eps = s.get("fgsm_eps", s.get("eps", s.get("attack_settings", {}).get("eps")))
    mode = flags.get("mode") or s.get("mode") or (
        "blackbox" if source.kind == "projected" else "whitebox")
    text = f"{'black' if mode == 'blackbox' else 'white'}-box {ATTACK_NAMES.get(attack, attack)}"
    if eps is not None and attack != "cw":
        text += f" eps {eps:g}"
    if mode != "blackbox" and s.get("gradient"):
        text += f" ({s['gradient'].upper() if s['gradient'] == 'bpda' else s['gradient']})"
    substitute = (s.get("substitute") or s.get("substitute_model") or flags.get("sub_model")
                  or flags.get("substitute_model"))
    if isinstance(substitute, dict):  # a --mode=blackbox run's settings: the substitute's facts
        substitute = substitute.get("model")
    if mode == "blackbox" and substitute:
        text += f", substitute {substitute}"
    if eps is None and attack != "cw":
        text += f" [{source.name}]"  # its results.json does not say: the folder does
    return text


def _check_npz(path: str, splits) -> None:
    """Refuse an adversarial.npz that does not fit the test set (ConfigError naming it)."""
    try:
        with np.load(path) as f:
            x_adv, labels, indices = f["x_adv"], f["labels"], f["indices"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"--adv_sources: '{path}' is not an adversarial.npz with x_adv, "
                          f"labels, indices ({err})") from None
    shape = tuple(splits.x_test.shape[1:])
    problem = None
    if x_adv.ndim != 4 or tuple(x_adv.shape[1:]) != shape:
        problem = f"x_adv has shape {x_adv.shape}, not [N, {', '.join(map(str, shape))}]"
    elif not len(x_adv) == len(labels) == len(indices) or len(x_adv) == 0:
        problem = "x_adv, labels and indices differ in length (or are empty)"
    elif indices.min() < 0 or indices.max() >= len(splits.x_test):
        problem = "indices outside the test set"
    elif np.any(splits.y_test[indices] != labels):
        problem = "labels differ from the test set's at its indices (another data set?)"
    elif np.any(x_adv < 0) or np.any(x_adv > 1):
        problem = "x_adv outside [0, 1]"
    if problem:
        raise ConfigError(f"--adv_sources: '{path}': {problem}")


def collect_sources(cfg: Config, identity: dict, splits) -> tuple[list, list]:
    """(sources, skipped): the usable sources, and the white-box runs found but not used (with
    why). Raises ConfigError for an --adv_sources folder that cannot be used."""
    sources, skipped, seen = [], [], set()
    if cfg.detect_whitebox:
        parent = os.path.join(REPO_ROOT, "results", cfg.dataset, "whitebox")
        for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
            folder = os.path.join(parent, name)
            result = results.load(folder)
            s = result.get("settings", {})
            if not (s.get("model") == cfg.model and s.get("defense") == "defense_gan"
                    and s.get("gradient") == "bpda" and s.get("attack") in WHITEBOX_ATTACKS):
                continue
            why = _records_usable(folder, result, identity, splits.y_test)
            if why:
                skipped.append({"folder": os.path.relpath(folder, REPO_ROOT), "why": why})
                continue
            sources.append(Source(folder, "records", result))
            seen.add(os.path.realpath(folder))
    for given in cfg.adv_sources or []:
        folder = os.path.abspath(given.strip())
        if not os.path.isdir(folder):
            raise ConfigError(f"--adv_sources: '{given}' is not a folder")
        if os.path.realpath(folder) in seen:
            continue
        result = results.load(folder)
        why = _records_usable(folder, result, identity, splits.y_test)
        npz = os.path.join(folder, ADVERSARIAL_NPZ)
        if why is None:
            sources.append(Source(folder, "records", result))
        elif os.path.isfile(npz):
            _check_npz(npz, splits)
            sources.append(Source(folder, "projected", result))
        else:
            raise ConfigError(f"--adv_sources: '{given}' has no {ADVERSARIAL_NPZ} to project and "
                              f"its records cannot join this ROC ({why})")
        seen.add(os.path.realpath(folder))
    keys = set()
    for source in sources:
        source.label = _label(source)
        key, i = source.name, 2
        while key in keys:
            key, i = f"{source.name}_{i}", i + 1
        keys.add(key)
        source.key = key
    return sources, skipped


# --- the run ------------------------------------------------------------------------------------

def projection_cache(parent: str, g_manifest: dict, settings, seed: int, precision: str,
                     snapshots: projection.SnapshotProjector | None = None,
                     **extra) -> rec_cache.ProjectionCache:
    """rec_cache.clean_cache (test images), or, with `extra` key entries, a cache of another
    image set beside it in the same folder (split="validation"; the sha256 of a black-box
    run's adversarial.npz): batch k of that set, keyed like the clean cache plus `extra`.
    With `snapshots` (the run's SnapshotProjector), the cache also writes each snapshot's
    projection into the cache a run at that L reads."""
    def one(s):
        cache = rec_cache.clean_cache(parent, g_manifest, s, seed, precision)
        if not extra:
            return cache
        return rec_cache.ProjectionCache(os.path.join(parent, ".projection_cache"),
                                          cache.key | extra)
    if snapshots is None:
        return one(settings)
    return rec_cache.SnapshotCaches(
        one(settings), {step: one(dataclasses.replace(settings, rec_iters=step))
                        for step in snapshots.steps}, snapshots)


def _predict(classifier, x: np.ndarray) -> np.ndarray:
    return np.concatenate([tf.argmax(classifier(x[i:i + 500], training=False), 1).numpy()
                           for i in range(0, len(x), 500)]).astype(int)


class CleanTest:
    """Clean test images' reconstruction MSE and predictions, by test index, from the cache."""

    def __init__(self, x_test, projector, cache, classifier, seed, timing):
        self.x_test, self.projector, self.cache = x_test, projector, cache
        self.classifier, self.seed, self.timing = classifier, seed, timing
        self.mse, self.pred, self.pred_rec = {}, {}, {}

    def need(self, indices) -> None:
        b = self.projector.settings.batch_size
        batches = sorted({int(i) // b for i in indices if int(i) not in self.mse})
        for n_done, k in enumerate(batches):
            lo = k * b
            count = min(b, len(self.x_test) - lo)
            x = data.to_float(self.x_test[lo:lo + count]).numpy()
            t = time.time()
            x_rec, mse, fresh = rec_cache.reconstruct_batch(
                self.projector, self.cache, k, projection.pad_batch(x, b), count, self.seed)
            if fresh:
                self.timing["clean_test_projected_images"] += b
                self.timing["clean_test_projection_seconds"] += time.time() - t
                done = self.timing["clean_test_projected_images"]
                self.timing["images_per_second"]["clean_test"] = (
                    done / self.timing["clean_test_projection_seconds"])
            pred, pred_rec = _predict(self.classifier, x), _predict(self.classifier, x_rec[:count])
            for i in range(count):
                self.mse[lo + i] = float(mse[i])
                self.pred[lo + i], self.pred_rec[lo + i] = int(pred[i]), int(pred_rec[i])
            print(f"[detect] clean test batch {n_done + 1}/{len(batches)}"
                  f"{'' if fresh else ' (cached)'}", flush=True)


def _source_records(source: Source, cfg: Config, clean: CleanTest, classifier, projector,
                    g_manifest, settings, precision, cache_parent, timing,
                    snapshots=None) -> tuple[list, dict]:
    """Per-example records (whitebox keys) of the first --num_tests attacked images of
    `source`, with mse_clean from this run's clean cache; and facts about the source."""
    info = {"folder": os.path.relpath(source.folder, REPO_ROOT) if source.folder.startswith(
        REPO_ROOT) else source.folder, "kind": source.kind, "label": source.label,
        "command": source.result.get("command")}
    if source.kind == "records":
        records = [dict(r) for r in read_records(source.folder)[:cfg.num_tests]]
        clean.need([r["index"] for r in records])
        diffs = [abs(r["mse_clean"] - clean.mse[r["index"]]) for r in records]
        info["source_mse_clean_max_abs_diff"] = float(max(diffs))  # same projection: ~0
        for r in records:
            r["mse_clean"] = clean.mse[r["index"]]
        info["model"] = source.result.get("settings", {}).get("model")
        return records, info
    path = os.path.join(source.folder, ADVERSARIAL_NPZ)
    with np.load(path) as f:
        x_adv = f["x_adv"][:cfg.num_tests].astype(np.float32)
        labels, indices = f["labels"][:cfg.num_tests], f["indices"][:cfg.num_tests]
    info["adversarial_npz_sha256"] = sha256_file(path)
    clean.need(indices)
    cache = projection_cache(cache_parent, g_manifest, settings, cfg.seed, precision,
                             snapshots, split="adversarial",
                             source=info["adversarial_npz_sha256"])
    x_rec, mse, rate = rec_cache.reconstruct(
        x_adv, projector, cfg.seed, cache,
        progress=lambda done, n: print(f"[detect] {source.key}: projected {done}/{n}",
                                       flush=True))
    timing["images_per_second"][source.key] = rate
    pred_adv, pred_adv_rec = _predict(classifier, x_adv), _predict(classifier, x_rec)
    x = data.to_float(clean.x_test[indices]).numpy()
    diff = (x_adv - x).reshape(len(x), -1)
    records = [{"index": int(idx), "label": int(labels[i]), "pred_clean": clean.pred[int(idx)],
                "pred_adv": int(pred_adv[i]), "pred_clean_defended": clean.pred_rec[int(idx)],
                "pred_adv_defended": int(pred_adv_rec[i]), "mse_clean": clean.mse[int(idx)],
                "mse_adv": float(mse[i]), "linf": float(np.abs(diff[i]).max()),
                "l2": float(np.sqrt((diff[i] ** 2).sum()))} for i, idx in enumerate(indices)]
    info["model"] = cfg.model
    return records, info


def curve_metrics(records: list, threshold: float, bootstrap: int, seed: int) -> dict:
    """AUC (+ bootstrap 95% interval), detection rate at `threshold` (+ Wilson interval), the
    clean test images' false positive rate there, and the classifier's accuracies."""
    clean = np.array([r["mse_clean"] for r in records])
    attacked = np.array([r["mse_adv"] for r in records])
    detected, n = detection.detection_rate(attacked, threshold)
    false_pos, n_clean = detection.detection_rate(clean, threshold)
    accuracy = results.summarize(records, "defense_gan")
    return {
        "n_clean": n_clean, "n_attacked": n,
        "auc": detection.auc(clean, attacked),
        "auc_ci95": list(detection.auc_bootstrap(clean, attacked, samples=bootstrap, seed=seed)),
        "auc_ci95_method": f"percentile bootstrap, {bootstrap} stratified resamples, seed {seed}",
        "detection_rate": detected / n, "detected": detected,
        "detection_rate_ci95": list(stats.wilson_interval(detected, n)),
        "test_clean_fpr": false_pos / n_clean, "test_clean_flagged": false_pos,
        "test_clean_fpr_ci95": list(stats.wilson_interval(false_pos, n_clean)),
        "mean_mse_clean": float(clean.mean()), "mean_mse_attacked": float(attacked.mean()),
        "accuracy": {k: v for k, v in accuracy.items() if k in (
            "num_images", "clean_accuracy", "clean_accuracy_ci95", "defended_clean_accuracy",
            "defended_clean_accuracy_ci95", "adversarial_accuracy", "adversarial_accuracy_ci95",
            "undefended_adversarial_accuracy", "undefended_adversarial_accuracy_ci95",
            "mean_l2", "mean_linf")},
    }


def run(cfg: Config) -> None:
    splits = data.load(cfg.dataset, cfg.data_source, cfg.data_dir)
    n_val = cfg.detect_val or cfg.num_tests
    if cfg.num_tests > len(splits.x_test):
        raise ConfigError(f"--num_tests: {cfg.num_tests} exceeds the {len(splits.x_test)} "
                          "test images")
    if len(splits.x_val) == 0:
        raise ConfigError(f"--detect_val: the threshold needs validation images, and "
                          f"--dataset={cfg.dataset} has none")
    if n_val > len(splits.x_val):
        raise ConfigError(f"--detect_val: {n_val} exceeds the {len(splits.x_val)} validation "
                          "images")
    classifier, c_manifest = classifiers.load_classifier(cfg.resolved_classifier_dir(),
                                                         cfg.dataset, cfg.model)
    precision = hardware.resolve_precision(cfg.precision)
    generator, g_manifest = gan.load_generator(cfg.resolved_gan_dir(), cfg.dataset, precision)
    identity = projection_identity(g_manifest["files"], cfg, precision)
    sources, skipped = collect_sources(cfg, identity, splits)
    results_dir = os.path.abspath(cfg.results_dir or os.path.join(
        REPO_ROOT, "results", cfg.dataset, "detect", run_name(cfg)))
    problem = files.writable_dir_problem(results_dir)  # after every check: bad input writes nothing
    if problem:
        raise ConfigError(f"--results_dir: '{results_dir}' {problem}")
    print(f"[detect] model {cfg.model}, L={cfg.rec_iters}, R={cfg.rec_rr}: {n_val} validation "
          f"images for the threshold (FPR {cfg.detect_fpr:g}), {len(sources)} attack source(s)"
          f", at most {cfg.num_tests} images each -> {results_dir}", flush=True)
    settings = projection.ProjectionSettings(cfg.rec_iters, cfg.rec_rr, cfg.rec_lr,
                                             batch_size=cfg.eval_batch_size,
                                             rec_prune_at=cfg.rec_prune_at, rec_keep=cfg.rec_keep)
    projector = projection.Projector(generator, splits.image_shape,
                                     int(g_manifest.get("latent_dim", 128)), settings)
    snapshot_steps = parse_snapshots(cfg)
    snapshots = None
    if snapshot_steps:
        projector = snapshots = projection.SnapshotProjector(projector, snapshot_steps)
    cache_parent = os.path.dirname(results_dir)
    # Projection speed of each stage computed here (None: all of it came from the cache).
    timing = {"clean_test_projection_seconds": 0.0, "clean_test_projected_images": 0,
              "images_per_second": {}}

    # 1. The threshold, on clean validation images only.
    val_cache = projection_cache(cache_parent, g_manifest, settings, cfg.seed, precision,
                                 snapshots, split="validation")
    _, mse_val, rate = rec_cache.reconstruct(
        data.to_float(splits.x_val[:n_val]).numpy(), projector, cfg.seed, val_cache,
        progress=lambda done, n: print(f"[detect] validation: projected {done}/{n}", flush=True))
    timing["images_per_second"]["validation"] = rate
    threshold = detection.threshold_for_fpr(mse_val, cfg.detect_fpr)
    val_flagged, _ = detection.detection_rate(mse_val, threshold)

    # 2. Clean test images (the first --num_tests, and those paired with each source).
    clean = CleanTest(splits.x_test, projector, projection_cache(
        cache_parent, g_manifest, settings, cfg.seed, precision, snapshots), classifier,
        cfg.seed, timing)
    clean.need(range(cfg.num_tests))
    test_mse = np.array([clean.mse[i] for i in range(cfg.num_tests)])
    test_flagged, _ = detection.detection_rate(test_mse, threshold)

    # 3. Each source: its records, AUC, detection rate.
    curves, roc = [], []
    for source in sources:
        records, info = _source_records(source, cfg, clean, classifier, projector, g_manifest,
                                        settings, precision, cache_parent, timing, snapshots)
        metrics = curve_metrics(records, threshold, cfg.detect_bootstrap, cfg.seed)
        files.write_json_atomic(os.path.join(results_dir, "records", f"{source.key}.json"),
                                {"source": info, "records": records})
        curves.append({"key": source.key, **info, **metrics})
        roc.append({"label": source.label, "clean": [r["mse_clean"] for r in records],
                    "attacked": [r["mse_adv"] for r in records]})
        print(f"[detect] {source.label}: AUC {metrics['auc']:.4f} "
              f"[{metrics['auc_ci95'][0]:.4f}, {metrics['auc_ci95'][1]:.4f}], detected "
              f"{metrics['detected']}/{metrics['n_attacked']} at FPR {cfg.detect_fpr:g}",
              flush=True)
    kinds = sorted({c["label"] for c in curves})
    available = ("attacks: " + "; ".join(kinds)) if kinds else (
        "no attacked images: no white-box run of this model through BPDA matches the projection "
        "and no --adv_sources was given (black-box FGSM needs --adv_sources=<blackbox run dirs>)")
    if curves:
        detection.write_roc_png(
            os.path.join(results_dir, "roc.png"), roc, fpr_target=cfg.detect_fpr,
            title=f"{cfg.dataset}, classifier {cfg.model}, L={cfg.rec_iters}, R={cfg.rec_rr}: "
                  f"detection by reconstruction MSE")
    result = {
        "settings": {"model": cfg.model, "rec_iters": cfg.rec_iters, "rec_rr": cfg.rec_rr,
                     "rec_lr": cfg.rec_lr, "precision": precision, "seed": cfg.seed,
                     "batch_size": cfg.eval_batch_size, "num_tests": cfg.num_tests,
                     "detect_val": n_val, "detect_fpr": cfg.detect_fpr,
                     "rec_prune_at": cfg.rec_prune_at,
                     "rec_keep": cfg.rec_keep if cfg.rec_prune_at else None,
                     "snapshots_cached_for_rec_iters": list(snapshot_steps),
                     "checkpoints": {
                         "generator": {"folder": g_manifest["folder"],
                                       "sha256": g_manifest["files"],
                                       "iterations": g_manifest.get("iterations")},
                         "classifier": {"folder": c_manifest["folder"],
                                        "sha256": c_manifest["files"]}}},
        "statistic": "per-pixel reconstruction MSE of the projection; flagged if > threshold",
        "threshold": {"value": threshold, "chosen_on": f"the first {n_val} validation images",
                      "target_fpr": cfg.detect_fpr, "validation_flagged": val_flagged,
                      "validation_n": n_val, "validation_fpr": val_flagged / n_val,
                      "test_clean_flagged": test_flagged, "test_clean_n": cfg.num_tests,
                      "test_clean_fpr": test_flagged / cfg.num_tests,
                      "test_clean_fpr_ci95": list(stats.wilson_interval(test_flagged,
                                                                        cfg.num_tests)),
                      "mean_mse_validation": float(np.mean(mse_val)),
                      "mean_mse_test_clean": float(test_mse.mean())},
        "attacks_available": available,
        "curves": curves,
        "skipped_whitebox_runs": skipped,
        "roc_png": "roc.png" if curves else None,
        "timing": timing,
        "command": "python main.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "flags": dataclasses.asdict(cfg),
        "environment": environment(),
    }
    result["written"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    files.write_json_atomic(os.path.join(results_dir, "results.json"), result)
    print(f"[detect] threshold {threshold:.5f}: validation FPR {val_flagged}/{n_val}, clean test "
          f"FPR {test_flagged}/{cfg.num_tests}; {available}", flush=True)
    print(f"[detect] wrote {results_dir}/results.json", flush=True)
