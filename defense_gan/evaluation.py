"""Attack x defense over fixed-size batches -> per-example records, resumable per batch.

Each batch's records are written atomically to `<records_dir>/batch_<k>.json` together with a
fingerprint of the settings; a rerun with the same settings skips finished batches, so a long
evaluation killed at any point loses at most one batch. Reconstructions of clean test images
depend only on the generator, L, R, lr, seed and batch, so they are cached across runs
(`projection_cache`), which halves the cost of evaluating many attacks and models.

A record (one per test image):
  index, label,
  pred_clean          the evaluated classifier on the clean image,
  pred_adv            the evaluated classifier on the adversarial image (no projection),
  linf, l2            perturbation norms,
  and with Defense-GAN:
  pred_clean_defended classifier(P(x)), pred_adv_defended classifier(P(x_adv)),
  mse_clean, mse_adv  per-pixel reconstruction MSE of P(x), P(x_adv) (the detection statistic).
  and with `fresh_seed` (iterative attacks through BPDA):
  pred_adv_defended_fresh_seed, mse_adv_fresh_seed   the same for P(x_adv) drawn with a
                      projection seed the attacker never saw (its restarts' z0 differ).

The attack's forward passes through the projection use the batch's seed [seed, k], and so
does pred_adv_defended: the attacker knows the defender's random restarts. An iterative attack
that keeps only the images that fooled those exact restarts (CW) can fit them; a deployed
defense draws fresh z0 per input, which pred_adv_defended_fresh_seed measures
([seed, k + FRESH_SEED_OFFSET]). Neither is an attack on the randomness itself (EOT).
"""

import hashlib
import io
import json
import os
import time

import numpy as np
import tensorflow as tf

from defense_gan.checkpoints import cpu_name
from defense_gan.files import write_bytes_atomic, write_json_atomic
from defense_gan.projection import pad_batch

# Batch k's fresh-seed projection uses [seed, k + FRESH_SEED_OFFSET]: never an attack seed,
# which are [seed, k] for k < the number of batches (at most the test set's size).
FRESH_SEED_OFFSET = 1 << 20


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


class ProjectionCache:
    """Clean-image reconstructions on disk, keyed by generator, projection settings, seed,
    batch index and batch content size."""

    def __init__(self, folder: str | None, key: dict):
        self.folder = os.path.join(folder, fingerprint(key)) if folder else None
        self.key = key

    def _path(self, k, count):
        return os.path.join(self.folder, f"batch_{k:05d}_{count}.npz")

    def get(self, k, count):
        if not self.folder or not os.path.isfile(self._path(k, count)):
            return None
        with np.load(self._path(k, count)) as f:
            return f["x_rec"], f["mse"]

    def put(self, k, count, x_rec, mse):
        if not self.folder:
            return
        buf = io.BytesIO()
        np.savez_compressed(buf, x_rec=x_rec, mse=mse)
        write_bytes_atomic(self._path(k, count), buf.getvalue())
        write_json_atomic(os.path.join(self.folder, "key.json"), self.key)


def clean_cache(results_parent: str, generator_manifest: dict, settings, seed: int,
                precision: str) -> ProjectionCache:
    """The cache of clean-image reconstructions that every run under `results_parent` shares
    (whitebox runs of any model and attack, and benchmarks/accuracy_check.py)."""
    return ProjectionCache(os.path.join(results_parent, ".projection_cache"),
                           {"generator": generator_manifest["files"], **settings.cache_key(),
                            "seed": seed, "precision": precision})


def reconstruct_batch(projector, cache: ProjectionCache | None, k: int, x: np.ndarray,
                      count: int, seed: int):
    """P(x) of batch k (x padded to the projector's batch size, `count` real images), seed
    (seed, k), from the cache when it holds it. Returns (x_rec, mse, computed: bool)."""
    cached = cache.get(k, count) if cache else None
    if cached is not None:
        return cached[0], cached[1], False
    x_rec, _, mse = projector(x, [seed, k])
    x_rec, mse = x_rec.numpy(), mse.numpy()
    if cache:
        cache.put(k, count, x_rec, mse)
    return x_rec, mse, True


def reconstruct(images, projector, seed: int, cache: ProjectionCache | None = None,
                progress=None):
    """P(x) of any number of images in the projector's fixed batches (as `evaluate` does), using
    and filling `cache`. Returns (x_rec [N, ...], mse [N], images/s of the batches computed here
    or None if all came from the cache)."""
    b = projector.settings.batch_size
    n = len(images)
    recs, mses, computed, seconds = [], [], 0, 0.0
    for k, lo in enumerate(range(0, n, b)):
        count = min(b, n - lo)
        t = time.time()
        x_rec, mse, fresh = reconstruct_batch(
            projector, cache, k, pad_batch(np.asarray(images[lo:lo + count], np.float32), b),
            count, seed)
        if fresh:
            computed += b
            seconds += time.time() - t
        recs.append(x_rec[:count])
        mses.append(mse[:count])
        if progress:
            progress(lo + count, n)
    return np.concatenate(recs), np.concatenate(mses), (computed / seconds if computed else None)


def evaluate(images, labels, *, classifier, attack, batch_size: int, seed: int,
             records_dir: str, settings: dict, defended=None, cache: ProjectionCache = None,
             fresh_seed: bool = False, progress=print):
    """Run `attack` against the defense on images (float32 [N, H, W, C] in [0, 1]).

    classifier: x -> logits (the evaluated classifier, undefended or adversarially trained).
    attack: x float32 [batch_size, ...] -> x_adv (already bound to its model_fn and gradient).
    defended: a `defense.DefendedClassifier` for Defense-GAN, or None.
    fresh_seed: also classify P(x_adv) projected with a seed the attacker never saw (one more
      projection per batch; see the module docstring).
    Returns (records, stats): stats has the seconds spent projecting and attacking and the
    images projected, summed over all batches that saved their timing (resumed ones too),
    `batches_resumed`, and `cpus` (CPU name -> batches computed on it).
    """
    os.makedirs(records_dir, exist_ok=True)
    tag = fingerprint(settings)
    n = len(images)
    # Totals over every batch, resumed ones included (their timing is saved with their
    # records), so a run that spans several sessions or machines reports all of its batches.
    records, stats = [], {"projection_seconds": 0.0, "projected_images": 0,
                          "batches_resumed": 0, "attack_seconds": 0.0, "cpus": {}}
    cpu = cpu_name()

    def add_timing(timing):
        for key in ("projection_seconds", "projected_images", "attack_seconds"):
            stats[key] += timing[key]
        stats["cpus"][timing["cpu"]] = stats["cpus"].get(timing["cpu"], 0) + 1
    start_time = time.time()
    num_batches = (n + batch_size - 1) // batch_size
    for k in range(num_batches):
        lo, hi = k * batch_size, min(n, (k + 1) * batch_size)
        path = os.path.join(records_dir, f"batch_{k:05d}.json")
        if os.path.isfile(path):
            with open(path) as f:
                saved = json.load(f)
            if saved.get("fingerprint") == tag and len(saved["records"]) == hi - lo:
                records.extend(saved["records"])
                stats["batches_resumed"] += 1
                if "timing" in saved:  # batches written before timing was saved have none
                    add_timing(saved["timing"])
                continue
        count = hi - lo
        x = pad_batch(np.asarray(images[lo:hi], np.float32), batch_size)
        y = labels[lo:hi]
        batch_seed = [seed, k]
        timing = {"projection_seconds": 0.0, "projected_images": 0, "attack_seconds": 0.0,
                  "cpu": cpu}
        if defended is not None:
            defended.attack_seed.assign(batch_seed)
            t = time.time()
            x_rec_clean, mse_clean, fresh = reconstruct_batch(defended.projector, cache, k, x,
                                                              count, seed)
            timing["projected_images"] += batch_size if fresh else 0
            timing["projection_seconds"] += time.time() - t
            defended.remember(x, x_rec_clean, batch_seed)  # BPDA at x reuses P(x)
        t = time.time()
        x_adv = attack(tf.constant(x)).numpy()
        timing["attack_seconds"] += time.time() - t
        pred_clean = tf.argmax(classifier(x, training=False), 1).numpy()
        pred_adv = tf.argmax(classifier(x_adv, training=False), 1).numpy()
        diff = (x_adv - x).reshape(batch_size, -1)
        batch_records = [{"index": lo + i, "label": int(y[i]), "pred_clean": int(pred_clean[i]),
                          "pred_adv": int(pred_adv[i]),
                          "linf": float(np.abs(diff[i]).max()),
                          "l2": float(np.sqrt((diff[i] ** 2).sum()))} for i in range(count)]
        if defended is not None:
            def defend(seed_pair):
                """classifier(P(x_adv)) with the projection seed `seed_pair`, timed."""
                t = time.time()
                out = defended.logits(x_adv, seed_pair)
                timing["projected_images"] += batch_size
                timing["projection_seconds"] += time.time() - t
                return out
            logits_adv, x_rec_adv, mse_adv = defend(batch_seed)
            pred_clean_def = tf.argmax(classifier(x_rec_clean, training=False), 1).numpy()
            pred_adv_def = tf.argmax(logits_adv, 1).numpy()
            mse_adv = mse_adv.numpy()
            for i, r in enumerate(batch_records):
                r.update(pred_clean_defended=int(pred_clean_def[i]),
                         pred_adv_defended=int(pred_adv_def[i]),
                         mse_clean=float(mse_clean[i]), mse_adv=float(mse_adv[i]))
            if fresh_seed:
                logits_f, _, mse_f = defend([seed, k + FRESH_SEED_OFFSET])
                pred_f, mse_f = tf.argmax(logits_f, 1).numpy(), mse_f.numpy()
                for i, r in enumerate(batch_records):
                    r.update(pred_adv_defended_fresh_seed=int(pred_f[i]),
                             mse_adv_fresh_seed=float(mse_f[i]))
            if k == 0:
                _save_example_images(records_dir, x[:count], x_adv[:count], x_rec_adv.numpy()[
                    :count], x_rec_clean[:count])
        elif k == 0:
            _save_example_images(records_dir, x[:count], x_adv[:count])
        write_json_atomic(path, {"fingerprint": tag, "settings": settings,
                                 "records": batch_records, "timing": timing})
        add_timing(timing)
        records.extend(batch_records)
        done = len(records)
        elapsed = time.time() - start_time
        fresh = done - stats["batches_resumed"] * batch_size
        eta = (n - done) * elapsed / max(fresh, 1)
        acc_key = "pred_adv_defended" if defended is not None else "pred_adv"
        acc = np.mean([r[acc_key] == r["label"] for r in records])
        progress(f"[whitebox] {done}/{n} images  adversarial accuracy so far {acc:.4f}  "
                 f"{elapsed / 60:.1f} min elapsed, ETA {eta / 60:.1f} min")
    return records, stats


def _save_example_images(records_dir, *rows):
    """Keep the first batch's images (clean, adversarial[, P(x_adv), P(x)]) for the PNG grid."""
    buf = io.BytesIO()
    np.savez_compressed(buf, *rows)
    write_bytes_atomic(os.path.join(records_dir, "examples.npz"), buf.getvalue())


def load_example_images(records_dir):
    path = os.path.join(records_dir, "examples.npz")
    if not os.path.isfile(path):
        return []
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]
