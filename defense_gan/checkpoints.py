"""Inference checkpoints: export with a manifest, verify and load.

A shipped (or exported) model is a folder with
    weights.index, weights.data-00000-of-00001   tf.train.Checkpoint(model=...).write()
    manifest.json                               kind, dataset, architecture, sha256 of each
                                                file, step, wall clock, flags, TF version, metrics
Training folders (`--train_dir`) hold full training state under `ckpt/` (CheckpointManager)
and the latest inference export under `export/`; `resolve_model_dir` accepts either.

Everything written here goes to a temporary name first and is renamed into place, so a crash
never leaves a half-written file.
"""

import datetime
import hashlib
import json
import os
import platform

import keras
import tensorflow as tf

from defense_gan.errors import ConfigError
from defense_gan.files import replace_dir_atomic, write_json_atomic

WEIGHTS = "weights"
MANIFEST = "manifest.json"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def environment() -> dict:
    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "cpu": cpu_name()}


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, with its family and model numbers when /proc/cpuinfo has them.

    Virtual machines often report only "AMD EPYC", which hides whether the CPU is a Zen 2 or a
    Zen 5 (a 4x difference in projection speed); family 25 / 26 tell them apart.
    """
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if fields.get("cpu family") and fields.get("model"):
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def export(folder: str, model: keras.Model, manifest: dict) -> dict:
    """Write `model`'s weights and a manifest into `folder`, replacing it atomically.

    `manifest` must hold at least `kind` and `dataset`; sha256s, time and versions are added.
    Returns the manifest written.
    """
    def fill(tmp):
        tf.train.Checkpoint(model=model).write(os.path.join(tmp, WEIGHTS))
        files = sorted(n for n in os.listdir(tmp) if n.startswith(WEIGHTS + "."))
        full = dict(manifest)
        full["files"] = {n: sha256_file(os.path.join(tmp, n)) for n in files}
        full["parameters"] = int(model.count_params())
        full["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds")
        full["environment"] = environment()
        write_json_atomic(os.path.join(tmp, MANIFEST), full)
        return full
    return replace_dir_atomic(folder, fill)


def resolve_model_dir(folder: str, flag: str) -> str:
    """The folder holding manifest.json: `folder` itself or its `export/` (a --train_dir)."""
    for candidate in (folder, os.path.join(folder, "export")):
        if os.path.isfile(os.path.join(candidate, MANIFEST)):
            return candidate
    if not os.path.isdir(folder):
        raise ConfigError(f"--{flag}: '{folder}' does not exist")
    raise ConfigError(f"--{flag}: '{folder}' holds no checkpoint (no {MANIFEST}, "
                      "and no export/ from a training run)")


def read_manifest(folder: str, flag: str, kind: str, dataset: str,
                  verify: bool = True) -> dict:
    """Read and check the manifest of an exported model; verify file checksums."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--{flag}: '{path}' is not a readable manifest: {err}") from None
    if manifest.get("kind") != kind:
        raise ConfigError(f"--{flag}: '{folder}' holds a '{manifest.get('kind')}' checkpoint, "
                          f"not a '{kind}'")
    if manifest.get("dataset") != dataset:
        raise ConfigError(f"--{flag}: '{folder}' was trained on '{manifest.get('dataset')}', "
                          f"not on --dataset={dataset}")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            file_path = os.path.join(folder, name)
            if not os.path.isfile(file_path):
                raise ConfigError(f"--{flag}: checkpoint file '{file_path}' is missing")
            if sha256_file(file_path) != digest:
                raise ConfigError(f"--{flag}: checkpoint file '{file_path}' fails its sha256 "
                                  "check (truncated or modified)")
    return manifest


def restore_weights(folder: str, model: keras.Model, flag: str) -> None:
    """Restore `model` (already built) from `folder`/weights; every variable must match."""
    prefix = os.path.join(folder, WEIGHTS)
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.expect_partial()  # silence exit-time warnings; the assert below is the check
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--{flag}: checkpoint '{prefix}' does not fit this architecture "
                          f"({first[:200]})") from None


def load(folder: str, model: keras.Model, flag: str, kind: str, dataset: str,
         architecture: str | None = None) -> dict:
    """Verify and restore an exported model into `model` (built). Returns its manifest."""
    folder = resolve_model_dir(folder, flag)
    manifest = read_manifest(folder, flag, kind, dataset)
    if architecture is not None and manifest.get("architecture") != architecture:
        raise ConfigError(f"--{flag}: '{folder}' holds architecture "
                          f"'{manifest.get('architecture')}', not '{architecture}'")
    restore_weights(folder, model, flag)
    manifest["folder"] = folder
    return manifest
