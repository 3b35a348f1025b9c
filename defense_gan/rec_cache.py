"""Reconstructions P(x) on disk, so no projection is ever computed twice.

Two caches share one chunk store (npz files, no pickles, each written atomically and listed
with its sha256 in the folder's `index.json`):

- `ProjectionCache`: reconstructions of clean test images per evaluation batch, in a
  subfolder named by the fingerprint of the key, so runs with other settings simply use
  another subfolder (every whitebox run and benchmarks/accuracy_check.py share it).
- `ReconstructionCache`: reconstructions of a whole split (e.g. the 50,000 training images
  for Defense-GAN-Rec) in chunks of `chunk_size` images, in ONE folder chosen by the user
  (`--recs_dir`) whose `key.json` must match the request: another generator, other L/R,
  precision, early stop or seed is refused with a one-line error instead of being silently
  reused. A killed build resumes at the first missing chunk; the result is identical to an
  uninterrupted build because batch k of a split is always projected with seed [seed, k].

A chunk whose bytes no longer match the sha256 in the index (truncated, modified) is a
one-line ConfigError naming the file.
"""

import hashlib
import io
import json
import os
import time

import numpy as np

from defense_gan.errors import ConfigError
from defense_gan.files import write_bytes_atomic, write_json_atomic
from defense_gan.projection import pad_batch

INDEX = "index.json"
KEY = "key.json"


def fingerprint(settings: dict) -> str:
    """A short sha256 of `settings` as canonical JSON (16 hex digits)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def portable(settings):
    """`settings` as JSON values, without what depends on where the checkout lives, for
    comparing runs made in different clones: a "folder" beside a "sha256" is dropped (the
    files' hashes name the weights) and any other absolute path keeps only its base name."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if not (k == "folder" and "sha256" in value)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value):
            return os.path.basename(os.path.normpath(value))
        return value
    return strip(json.loads(json.dumps(settings, default=str)))


def portable_fingerprint(settings: dict) -> str:
    """fingerprint(portable(settings)): the same in every clone of the repository."""
    return fingerprint(portable(settings))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChunkStore:
    """Named npz chunks in `folder`, each listed in `index.json` with its sha256 and metadata.

    put(name, arrays, **meta) writes `<name>.npz` atomically, then its index entry (the index
    is re-read before each update, so processes filling different chunks lose no entries; a
    lost entry only means the chunk is computed again). get(name) returns the arrays (dict of
    numpy arrays) and the entry, or None if the chunk is not indexed; a chunk that fails its
    sha256 raises ConfigError naming the file and `flag`.

    adopt_unindexed: accept (and index) a readable chunk file that has no index entry (caches
    written before the index existed).
    """

    def __init__(self, folder: str, flag: str, adopt_unindexed: bool = False):
        self.folder = folder
        self.flag = flag
        self.adopt_unindexed = adopt_unindexed

    def path(self, name: str) -> str:
        return os.path.join(self.folder, f"{name}.npz")

    def index(self) -> dict:
        try:
            with open(os.path.join(self.folder, INDEX)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise ConfigError(f"--{self.flag}: '{os.path.join(self.folder, INDEX)}' is not "
                              f"readable ({err}); delete it to rebuild the cache") from None

    def get(self, name: str):
        entry = self.index().get(name)
        path = self.path(name)
        if entry is None:
            if not (self.adopt_unindexed and os.path.isfile(path)):
                return None
            try:
                with open(path, "rb") as f:
                    data = f.read()
                arrays = _load(data)
            except (OSError, ValueError, EOFError):
                return None  # an unreadable legacy file is just recomputed
            entry = {"sha256": _sha256(data)}
            self._add_entry(name, entry)
            return arrays, entry
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            raise ConfigError(f"--{self.flag}: cache chunk '{path}' is listed in "
                              f"{INDEX} but cannot be read; delete the folder "
                              f"'{self.folder}' to rebuild it") from None
        if _sha256(data) != entry["sha256"]:
            raise ConfigError(f"--{self.flag}: cache chunk '{path}' fails its sha256 check "
                              "(truncated or modified); delete it and rerun to rebuild it")
        return _load(data), entry

    def put(self, name: str, arrays: dict, **meta) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        data = buf.getvalue()
        write_bytes_atomic(self.path(name), data)
        self._add_entry(name, {"sha256": _sha256(data), **meta})

    def _add_entry(self, name: str, entry: dict) -> None:
        index = self.index()
        index[name] = entry
        write_json_atomic(os.path.join(self.folder, INDEX), index)


def _load(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# --- clean test images, per evaluation batch ---------------------------------------------------

class ProjectionCache:
    """Clean-image reconstructions on disk, keyed by generator, projection settings, seed,
    batch index and batch content size (a subfolder per key fingerprint)."""

    def __init__(self, folder: str | None, key: dict):
        self.folder = os.path.join(folder, fingerprint(key)) if folder else None
        self.key = key
        self.store = ChunkStore(self.folder, "results_dir", adopt_unindexed=True) \
            if self.folder else None

    @staticmethod
    def _name(k, count):
        return f"batch_{k:05d}_{count}"

    def get(self, k, count):
        """(x_rec, mse) of batch k with `count` real images, or None."""
        found = self.store.get(self._name(k, count)) if self.store else None
        if found is None:
            return None
        return found[0]["x_rec"], found[0]["mse"]

    def put(self, k, count, x_rec, mse):
        if not self.store:
            return
        self.store.put(self._name(k, count), {"x_rec": x_rec, "mse": mse})
        write_json_atomic(os.path.join(self.folder, KEY), self.key)


class SnapshotCaches:
    """The cache of a SnapshotProjector's batches (`cache`, at its L) that also holds each
    snapshot: putting batch k writes the projector's snapshot of that batch (`projector.last`)
    into snapshot_caches[l], the cache a run at L=l reads. A batch counts as cached only when
    every one of them has it, so a run killed between two writes projects that batch again."""

    def __init__(self, cache: ProjectionCache, snapshot_caches: dict, projector):
        self.cache, self.snapshot_caches, self.projector = cache, snapshot_caches, projector
        self.key = cache.key

    def get(self, k, count):
        if any(c.get(k, count) is None for c in self.snapshot_caches.values()):
            return None
        return self.cache.get(k, count)

    def put(self, k, count, x_rec, mse):
        for step, c in self.snapshot_caches.items():
            c.put(k, count, *self.projector.last[step])
        self.cache.put(k, count, x_rec, mse)


def projection_key(generator_manifest: dict, settings, seed: int, precision: str) -> dict:
    """What determines a reconstruction: the generator's file sha256s, the projection settings
    (L, R, lr, momentum, batch, early stop), the seed and the compute precision."""
    return {"generator": generator_manifest["files"], **settings.cache_key(), "seed": seed,
            "precision": precision}


def clean_cache(results_parent: str, generator_manifest: dict, settings, seed: int,
                precision: str, first_index: int = 0) -> ProjectionCache:
    """The cache of clean-image reconstructions that every run under `results_parent` shares
    (whitebox runs of any model and attack, and benchmarks/accuracy_check.py). Batch k holds
    test images first_index + k * batch_size ... (blackbox evaluates test[150:])."""
    key = projection_key(generator_manifest, settings, seed, precision)
    if first_index:  # only then, so the keys of existing caches are unchanged
        key["first_index"] = first_index
    return ProjectionCache(os.path.join(results_parent, ".projection_cache"), key)


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
                progress=None, first_batch: int = 0):
    """P(x) of any number of images in the projector's fixed batches (as `evaluate` does), using
    and filling `cache`; batch j is projected with seed (seed, first_batch + j). Returns
    (x_rec [N, ...], mse [N], images/s of the batches computed here or None if all came from
    the cache)."""
    b = projector.settings.batch_size
    n = len(images)
    recs, mses, computed, seconds = [], [], 0, 0.0
    for j, lo in enumerate(range(0, n, b)):
        count = min(b, n - lo)
        t = time.time()
        x_rec, mse, fresh = reconstruct_batch(
            projector, cache, first_batch + j,
            pad_batch(np.asarray(images[lo:lo + count], np.float32), b), count, seed)
        if fresh:
            computed += b
            seconds += time.time() - t
        recs.append(x_rec[:count])
        mses.append(mse[:count])
        if progress:
            progress(lo + count, n)
    return np.concatenate(recs), np.concatenate(mses), (computed / seconds if computed else None)


# --- whole splits, in chunks, under one user-chosen folder -------------------------------------

def _describe_difference(found: dict, wanted: dict) -> str:
    names = sorted(set(found) | set(wanted))
    diffs = []
    for name in names:
        a, b = found.get(name), wanted.get(name)
        if a == b:
            continue
        if name == "generator":
            diffs.append("another generator (sha256 differs)")
        else:
            diffs.append(f"{name} {a} there, {b} here")
    return "; ".join(diffs)


class ReconstructionCache:
    """Reconstructions of whole splits under `folder` (one subfolder per split), for one key.

    key: what determines the reconstructions (`projection_key` plus dataset and chunk size);
      written to key.json on first use and compared on every later one: a mismatch is a
      ConfigError naming `--flag` and the folder.
    """

    def __init__(self, folder: str, key: dict, flag: str = "recs_dir"):
        self.folder = folder
        self.key = key
        self.flag = flag
        key_path = os.path.join(folder, KEY)
        if os.path.isfile(key_path):
            try:
                with open(key_path) as f:
                    found = json.load(f)
            except (OSError, ValueError) as err:
                raise ConfigError(f"--{flag}: '{key_path}' is not readable ({err}); delete "
                                  f"'{folder}' to rebuild the cache") from None
            if found != json.loads(json.dumps(key)):
                raise ConfigError(
                    f"--{flag}: '{folder}' holds reconstructions made with other settings "
                    f"({_describe_difference(found, json.loads(json.dumps(key)))}); delete it "
                    f"or choose another --{flag}")
        elif os.path.isdir(folder) and os.listdir(folder):
            raise ConfigError(f"--{flag}: '{folder}' is not empty and has no {KEY}, so it is "
                              f"not a reconstruction cache; choose another --{flag}")

    def build(self, split: str, images: np.ndarray, projector, seed: int, chunk_size: int,
              progress=print):
        """P(x) of every image of `split` (float32 [N, H, W, C] in [0, 1]), from the cache where
        present, computing and writing the missing chunks in order. chunk_size must be a
        multiple of the projector's batch size. Returns (x_rec float32 [N, H, W, C],
        mse float32 [N], {"computed_images", "seconds", "images_per_second"})."""
        b = projector.settings.batch_size
        if chunk_size % b:
            raise ValueError(f"chunk_size {chunk_size} is not a multiple of the batch size {b}")
        os.makedirs(self.folder, exist_ok=True)
        write_json_atomic(os.path.join(self.folder, KEY), self.key)
        store = ChunkStore(os.path.join(self.folder, split), self.flag)
        n = len(images)
        chunks = (n + chunk_size - 1) // chunk_size
        recs, mses = [], []
        computed, seconds = 0, 0.0
        for c in range(chunks):
            lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
            x = np.asarray(images[lo:hi], np.float32)
            input_sha = _sha256(x.tobytes())
            name = f"chunk_{c:05d}"
            found = store.get(name)
            if found is not None and found[1].get("count") == hi - lo:
                if found[1].get("input_sha256") != input_sha:
                    raise ConfigError(
                        f"--{self.flag}: cache chunk '{store.path(name)}' was built from other "
                        f"{split} images (another data set or --data_source); choose another "
                        f"--{self.flag}")
                recs.append(found[0]["x_rec"])
                mses.append(found[0]["mse"])
                continue
            t = time.time()
            x_rec, mse, _ = reconstruct(x, projector, seed, first_batch=lo // b)
            seconds += time.time() - t
            computed += hi - lo
            store.put(name, {"x_rec": x_rec, "mse": mse}, count=hi - lo, first=lo,
                      input_sha256=input_sha)
            recs.append(x_rec)
            mses.append(mse)
            rate = computed / seconds
            remaining = sum(min(n, (j + 1) * chunk_size) - j * chunk_size
                            for j in range(c + 1, chunks))
            progress(f"[recs] {split}: chunk {c + 1}/{chunks} ({hi}/{n} images) written, "
                     f"{rate:.2f} images/s, at most {remaining / rate / 60:.1f} min left")
        return (np.concatenate(recs), np.concatenate(mses),
                {"computed_images": computed, "seconds": round(seconds, 1),
                 "images_per_second": computed / seconds if computed else None})
