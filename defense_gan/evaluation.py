"""Attack x defense over fixed-size batches -> per-example records, resumable per batch.

Each batch's records are written atomically to `<records_dir>/batch_<k>.json` together with a
fingerprint of the settings (without the checkout's folders: a clone elsewhere resumes the
same records); a rerun with the same settings skips finished batches, so a long
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
  and with a defense that detects (MagNet): the same pred_*_defended (the classifier on the
  reformed input), <score_name>_clean/_adv (its detector score; >= 1 rejects) and
  rejected_clean, rejected_adv.
  and with `fresh_seed` (iterative attacks through BPDA):
  pred_adv_defended_fresh_seed, mse_adv_fresh_seed   the same for P(x_adv) drawn with a
                      projection seed the attacker never saw (its restarts' z0 differ).

The attack's forward passes through the projection use the batch's seed [seed, k], and so
does pred_adv_defended: the attacker knows the defender's random restarts. An iterative attack
that keeps only the images that fooled those exact restarts (CW) can fit them; a deployed
defense draws fresh z0 per input, which pred_adv_defended_fresh_seed measures
([seed, k + FRESH_SEED_OFFSET]). With BPDA + EOT (`defense.DefendedClassifier` with
eot_samples) the attack draws its own seeds, (seed, -(1 + k * 2**16 + i)), so neither (seed, k)
nor the fresh seed was seen by it: both evaluations are honest.
"""

import io
import json
import os
import time

import numpy as np
import tensorflow as tf

from defense_gan import results
from defense_gan.checkpoints import cpu_name
from defense_gan.errors import ConfigError
from defense_gan.files import write_bytes_atomic, write_json_atomic
from defense_gan.projection import pad_batch
from defense_gan.rec_cache import ProjectionCache, fingerprint, portable, portable_fingerprint

# Batch k's fresh-seed projection uses [seed, k + FRESH_SEED_OFFSET]: never an attack seed,
# which are [seed, k] for k < the number of batches (at most the test set's size).
FRESH_SEED_OFFSET = 1 << 20
PROGRESS_EVERY_SECONDS = 10.0  # at most one progress line per this many seconds (and the last)


def _saved_batch(path: str, settings: dict, tag: str, count: int) -> dict | None:
    """The saved records file at `path` if it holds `count` records made with `settings`, else
    None. `tag` is portable_fingerprint(settings); records written before fingerprints were
    portable (their tag hashed the checkout's absolute folders) are accepted when their own
    settings hash to their tag and equal `settings` up to those folders."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        saved = json.load(f)
    if len(saved.get("records", ())) != count:
        return None
    if saved.get("fingerprint") == tag:
        return saved
    old = saved.get("settings")
    if (old is not None and saved.get("fingerprint") == fingerprint(old)
            and portable(old) == portable(settings)):
        return saved
    return None


def _batch_path(records_dir: str, k: int) -> str:
    return os.path.join(records_dir, f"batch_{k:05d}.json")


def missing_batches(records_dir: str, settings: dict, n: int, batch_size: int) -> list:
    """Indices of the batches of an n-image evaluation with `settings` that have no complete
    records file yet."""
    tag = portable_fingerprint(settings)
    return [k for k in range(-(-n // batch_size))
            if _saved_batch(_batch_path(records_dir, k), settings, tag,
                            min(n, (k + 1) * batch_size) - k * batch_size) is None]


def wait_for_batches(records_dir: str, settings: dict, n: int, batch_size: int,
                     timeout: float, num_shards: int, progress=print, poll: float = 2.0) -> None:
    """Block until every batch's records exist (written by the other shards of a sharded run).
    Raises ConfigError naming --shard_timeout after `timeout` seconds without a new batch."""
    missing = missing_batches(records_dir, settings, n, batch_size)
    last_change, last_report = time.time(), 0.0
    while missing:
        if time.time() - last_change > timeout:
            shards = sorted({k % num_shards for k in missing})
            raise ConfigError(
                f"--shard_timeout: no new batch record for {timeout:g} s; shard(s) "
                f"{', '.join(map(str, shards))} of {num_shards} still owe batch(es) "
                f"{', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''} in "
                f"{records_dir}: restart them (each resumes per batch), or rerun with "
                "--num_shards=1 to compute the rest here")
        if time.time() - last_report > 60:
            progress(f"[whitebox] waiting for {len(missing)} batch(es) of the other shards")
            last_report = time.time()
        time.sleep(poll)
        now_missing = missing_batches(records_dir, settings, n, batch_size)
        if len(now_missing) < len(missing):
            last_change = time.time()
        missing = now_missing


def evaluate(images, labels, *, classifier, attack, batch_size: int, seed: int,
             records_dir: str, settings: dict, defended=None, cache: ProjectionCache = None,
             fresh_seed: bool = False, progress=print, index_offset: int = 0,
             mode: str = "whitebox", shard: tuple = (0, 1)):
    """Run `attack` against the defense on images (float32 [N, H, W, C] in [0, 1]).

    classifier: x -> logits (the evaluated classifier, undefended or adversarially trained).
    attack: (x float32 [batch_size, ...], y, batch=k) -> x_adv (already bound to its model_fn
      and gradient); y is the batch's true labels (padded like x) if `attack.true_labels`,
      else None (the attack uses the model's predictions); batch k seeds its noise.
    defended: a defense object (`defense.DefendedClassifier` for Defense-GAN,
      `magnet.MagNetDefense`) with purify_clean, logits, score_name, detects; or None.
    fresh_seed: also classify P(x_adv) projected with a seed the attacker never saw (one more
      projection per batch; see the module docstring).
    index_offset: the test-set index of images[0] (records' `index` are test-set indices).
    mode: the name that starts each progress line.
    shard: (index, count): compute only batches k with k % count == index (batch k holds
      images [k*batch_size, (k+1)*batch_size), seed [seed, k], so a batch's records do not
      depend on which process computes it); the records returned are this shard's.
    Returns (records, stats): stats has the seconds spent projecting and attacking and the
    images projected, summed over all batches that saved their timing (resumed ones too),
    `batches_resumed`, and `cpus` (CPU name -> batches computed on it).
    """
    os.makedirs(records_dir, exist_ok=True)
    tag = portable_fingerprint(settings)
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
    start_time = last_line = time.time()
    num_batches = (n + batch_size - 1) // batch_size
    mine = [k for k in range(num_batches) if k % shard[1] == shard[0]]
    n_mine = sum(min(n, (k + 1) * batch_size) - k * batch_size for k in mine)
    for k in mine:
        lo, hi = k * batch_size, min(n, (k + 1) * batch_size)
        path = _batch_path(records_dir, k)
        saved = _saved_batch(path, settings, tag, hi - lo)
        if saved is not None:
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
            t = time.time()
            x_rec_clean, mse_clean, fresh = defended.purify_clean(x, k, count, seed, cache)
            timing["projected_images"] += batch_size if fresh else 0
            timing["projection_seconds"] += time.time() - t
        t = time.time()
        y_attack = (tf.constant(pad_batch(np.asarray(y, np.int64), batch_size))
                    if getattr(attack, "true_labels", False) else None)
        x_adv = attack(tf.constant(x), y_attack, batch=k).numpy()
        timing["attack_seconds"] += time.time() - t
        pred_clean = tf.argmax(classifier(x, training=False), 1).numpy()
        pred_adv = tf.argmax(classifier(x_adv, training=False), 1).numpy()
        diff = (x_adv - x).reshape(batch_size, -1)
        batch_records = [{"index": index_offset + lo + i, "label": int(y[i]),
                          "pred_clean": int(pred_clean[i]),
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
            score = defended.score_name  # "mse" for Defense-GAN
            for i, r in enumerate(batch_records):
                r.update({"pred_clean_defended": int(pred_clean_def[i]),
                          "pred_adv_defended": int(pred_adv_def[i]),
                          f"{score}_clean": float(mse_clean[i]),
                          f"{score}_adv": float(mse_adv[i])})
                if defended.detects:  # a score >= 1 means the defense rejects the input
                    r.update(rejected_clean=bool(mse_clean[i] >= 1.0),
                             rejected_adv=bool(mse_adv[i] >= 1.0))
            if fresh_seed:
                logits_f, _, mse_f = defend([seed, k + FRESH_SEED_OFFSET])
                pred_f, mse_f = tf.argmax(logits_f, 1).numpy(), mse_f.numpy()
                for i, r in enumerate(batch_records):
                    r.update({"pred_adv_defended_fresh_seed": int(pred_f[i]),
                              f"{score}_adv_fresh_seed": float(mse_f[i])})
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
        now = time.time()
        if done < n_mine and now - last_line < PROGRESS_EVERY_SECONDS and k != mine[0]:
            continue  # fast batches (no projection) would print hundreds of lines
        last_line, elapsed = now, now - start_time
        fresh = done - stats["batches_resumed"] * batch_size
        eta = (n_mine - done) * elapsed / max(fresh, 1)
        acc = np.mean([results.adversarial_correct(r) for r in records])
        of_shard = f" (shard {shard[0]} of {shard[1]})" if shard[1] > 1 else ""
        progress(f"[{mode}] {done}/{n_mine} images{of_shard}  adversarial accuracy so far "
                 f"{acc:.4f}  {elapsed / 60:.1f} min elapsed, ETA {eta / 60:.1f} min")
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
