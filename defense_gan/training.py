"""The one run loop every trainer shares.

`run()` owns: the --train_dir checks, `flags.json`, strict restore-or-initialize with
`tf.train.CheckpointManager`, the step counter and accumulated wall clock (both checkpointed),
NaN checks, progress lines with rate and ETA, TensorBoard scalars, periodic checkpoints and
the inference export. A trainer supplies only the objects to checkpoint and a step function.

Crash safety: TF writes a checkpoint's files first and then atomically rewrites the `checkpoint`
state file, so a run killed at any moment resumes from the last complete checkpoint.
"""

import math
import os
import shutil
import sys
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from defense_gan import distribute, summaries
from defense_gan.errors import ConfigError, TrainingError
from defense_gan.files import writable_dir_problem, write_json_atomic

CKPT_SUBDIR = "ckpt"
LOG_SUBDIR = "logs"
EXPORT_SUBDIR = "export"


def prepare_train_dir(train_dir: str, create: bool = True) -> None:
    """Create `train_dir` or fail with a one-line error naming --train_dir; remove debris that
    a killed run can leave (partial `ckpt-N_temp/` saves, `.tmp-*` exports).
    create=False only checks (the modes' fail-fast check before the data load): a run that then
    stops on bad data leaves no empty train_dir behind."""
    problem = writable_dir_problem(train_dir, keep=create)
    if problem:
        raise ConfigError(f"--train_dir: '{train_dir}' {problem}")
    if not os.path.isdir(train_dir):
        return
    debris = [os.path.join(train_dir, n) for n in os.listdir(train_dir) if n.startswith(".tmp-")]
    ckpt_dir = os.path.join(train_dir, CKPT_SUBDIR)
    if os.path.isdir(ckpt_dir):
        debris += [os.path.join(ckpt_dir, n) for n in os.listdir(ckpt_dir)
                   if n.endswith("_temp")]
    for path in debris:
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def restore_or_initialize(manager: tf.train.CheckpointManager, checkpoint: tf.train.Checkpoint,
                          train_dir: str) -> None:
    """Restore the latest checkpoint strictly (every object and value must match)."""
    latest = manager.latest_checkpoint
    if latest is None:
        if os.path.isfile(os.path.join(manager.directory, "checkpoint")):
            raise ConfigError(f"--train_dir: '{manager.directory}/checkpoint' names no readable "
                              "checkpoint; move the folder away or pick another --train_dir")
        return
    try:
        checkpoint.restore(latest).assert_consumed()
    # A truncated .data file raises IndexError ("Read less bytes than requested").
    except (tf.errors.OpError, AssertionError, ValueError, IndexError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"--train_dir: checkpoint '{latest}' cannot be restored into this "
                          f"model (truncated, or from another mode/architecture): "
                          f"{first[:200]}") from None


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def run(train_dir: str, objects: dict, make_step_fn: Callable[[int], Callable[[int], dict]],
        total_steps: int, *, log_every: int, checkpoint_every: int, keep: int, flags: dict,
        on_image: Callable | None = None, image_every: int = 0,
        on_export: Callable[[int, float], None] | None = None, name: str = "train",
        strategy=None) -> int:
    """Train until `total_steps`, resuming from `train_dir`. Returns the final step.

    objects: trackables to checkpoint (models, optimizers, generators); their variables must
      already exist so the restore is strict.
    make_step_fn(start_step) -> step_fn(step) -> {metric name: scalar tensor}. It is called
      after the restore, so data pipelines can start at the restored position.
    on_image(writer, step): writes image summaries every `image_every` steps.
    on_export(step, wall_clock_seconds): writes the inference export after each checkpoint.
    strategy: the tf.distribute strategy the objects were built under, or None. In a
      multi-worker cluster every worker restores from and saves with the chief (a save is a
      collective step), but only the chief's files are kept: the others save into a private
      `.tmp-worker-<id>` that is deleted at once, and write no flags.json, logs or export.
    """
    chief = distribute.is_chief(strategy)
    if chief:
        prepare_train_dir(train_dir)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    elapsed_var = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="wall_clock")
    checkpoint = tf.train.Checkpoint(step=step_var, wall_clock=elapsed_var, **objects)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(train_dir, CKPT_SUBDIR),
                                         max_to_keep=keep)
    restore_or_initialize(manager, checkpoint, train_dir)
    saver = manager if chief else tf.train.CheckpointManager(
        checkpoint, os.path.join(distribute.worker_dir(train_dir, strategy), CKPT_SUBDIR),
        max_to_keep=1)
    start = int(step_var.numpy())
    if chief:
        write_json_atomic(os.path.join(train_dir, "flags.json"), flags)
    else:
        on_image = on_export = None
    if start >= total_steps:
        print(f"[{name}] {train_dir} is at step {start} >= {total_steps} requested; nothing to "
              "train (raise --iterations / --epochs to train longer)", flush=True)
        if on_export is not None:
            on_export(start, float(elapsed_var.numpy()))
        return start
    print(f"[{name}] {'resuming from step ' + str(start) if start else 'starting'} -> "
          f"{total_steps} steps in {train_dir}", flush=True)
    writer = (tf.summary.create_file_writer(os.path.join(train_dir, LOG_SUBDIR)) if chief
              else tf.summary.create_noop_writer())
    step_fn = make_step_fn(start)
    window_start, window_steps = time.time(), 0
    session_start = time.time()
    base_elapsed = float(elapsed_var.numpy())
    for step in range(start, total_steps):
        try:
            metrics = step_fn(step)
            values = {k: float(v) for k, v in metrics.items()}
        except distribute.WORKER_LOST_ERRORS as err:
            if strategy is None:
                raise
            lines = [line for line in str(err).splitlines() if line.strip() and not
                     line.startswith(("Graph execution error", "Detected at node", "  "))]
            first = (lines or [type(err).__name__])[0]
            raise TrainingError(f"step {step + 1} failed because a worker of the cluster "
                                f"stopped or cannot be reached ({type(err).__name__}: "
                                f"{first[:160]}); the last checkpoint ("
                                f"{tf.train.latest_checkpoint(manager.directory) or 'none'}) "
                                "is kept: restart "
                                "every worker with the same command to resume from it") from None
        bad = [k for k, v in values.items() if not np.isfinite(v)]
        if bad:
            raise TrainingError(f"non-finite {', '.join(bad)} at step {step + 1} in "
                                f"{train_dir}; the last checkpoint "
                                f"({manager.latest_checkpoint or 'none'}) is kept. Try a lower "
                                "learning rate or another --seed")
        step_var.assign(step + 1)
        window_steps += 1
        done = step + 1
        if done % log_every == 0 or done == total_steps:
            rate = window_steps / max(time.time() - window_start, 1e-9)
            eta = (total_steps - done) / rate
            summaries.scalars(writer, done, {**values, "steps_per_second": rate})
            shown = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"[{name}] step {done}/{total_steps}  {shown}  {rate:.2f} steps/s  "
                  f"ETA {format_seconds(eta)}", flush=True)
            window_start, window_steps = time.time(), 0
        if on_image is not None and image_every and (done % image_every == 0 or done == 1
                                                      or done == total_steps):
            on_image(writer, done)
        if done % checkpoint_every == 0 or done == total_steps:
            elapsed_var.assign(base_elapsed + time.time() - session_start)
            path = saver.save(checkpoint_number=done)
            distribute.discard_worker_dir(train_dir, strategy)
            writer.flush()
            if on_export is not None:
                on_export(done, float(elapsed_var.numpy()))
            if done != total_steps and chief:
                print(f"[{name}] saved {path}", flush=True)
    writer.flush()
    print(f"[{name}] done: step {total_steps}, checkpoint "
          f"{tf.train.latest_checkpoint(manager.directory)}",
          file=sys.stdout, flush=True)
    return total_steps
