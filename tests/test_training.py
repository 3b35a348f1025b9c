"""The training loop and `main.py --mode=train_gan`: outputs, resuming, crash safety, refusals,
NaN handling and the generator export."""

import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import (MAIN, REPO, SMOKE_FLAGFILE, SMOKE_ITERATIONS, error_line, run_main,
                      run_main_here, smoke_args, tree_digest)
from defense_gan import checkpoints, cli, config, gan, training
from defense_gan.errors import ConfigError, TrainingError

STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


def checkpoint_step(prefix) -> int:
    """The step counter stored in a training checkpoint (reads the files, not a model)."""
    return int(tf.train.load_checkpoint(str(prefix)).get_tensor(STEP_KEY))


def latest_checkpoint(train_dir):
    return tf.train.latest_checkpoint(os.path.join(train_dir, training.CKPT_SUBDIR))


def latest_number(train_dir) -> int:
    """The number of the latest checkpoint named in ckpt/checkpoint, 0 if none."""
    latest = latest_checkpoint(train_dir)
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def gan_checkpoint(model, step: int = 0, critic=None) -> tf.train.Checkpoint:
    """The root object of a train_gan checkpoint, as modes/train_gan.py builds it (`critic`
    replaces the critic, e.g. by an older layout)."""
    return tf.train.Checkpoint(step=tf.Variable(step, dtype=tf.int64),
                               wall_clock=tf.Variable(0.0, dtype=tf.float64),
                               generator=model.generator, critic=critic or model.critic,
                               g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer,
                               rng=model.rng)


def restore_gan_checkpoint(train_dir) -> int:
    """Strictly restore the latest train_gan checkpoint into fresh smoke-sized objects, as
    a resumed run would; returns its step."""
    ckpt = gan_checkpoint(gan.build_wgan(latent_dim=128, critic_iters=2))
    ckpt.restore(latest_checkpoint(train_dir)).assert_consumed()
    return int(ckpt.step.numpy())


# --- what a run leaves behind -------------------------------------------------------------------

def test_smoke_run_leaves_checkpoint_flags_json_tensorboard_events_and_samples(smoke_run):
    train_dir = smoke_run.train_dir
    latest = latest_checkpoint(train_dir)
    assert latest.endswith(f"ckpt-{SMOKE_ITERATIONS}")
    assert checkpoint_step(latest) == SMOKE_ITERATIONS
    flags = json.loads((train_dir / "flags.json").read_text())
    assert flags["mode"] == "train_gan" and flags["iterations"] == SMOKE_ITERATIONS
    assert flags["train_dir"] == str(train_dir)
    events = list((train_dir / training.LOG_SUBDIR).glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    assert (train_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"done: step {SMOKE_ITERATIONS}" in smoke_run.stdout


def test_rerun_with_more_iterations_resumes_from_the_saved_step(smoke_copy):
    rc, out, err = run_main(*smoke_args(smoke_copy, "--iterations=6"))
    assert rc == 0, err
    assert f"resuming from step {SMOKE_ITERATIONS}" in out
    latest = latest_checkpoint(smoke_copy)
    assert latest.endswith("ckpt-6") and checkpoint_step(latest) == 6
    assert json.loads((smoke_copy / "flags.json").read_text())["iterations"] == 6


def test_run_killed_with_sigkill_at_random_moments_resumes_and_finishes_intact(tmp_path):
    """Two runs are each killed at a random moment after they saved a checkpoint (possibly
    while writing the next one; the second resumed the first's); a third resumes from the last complete checkpoint, retraces
    the same losses and finishes with a strictly restorable checkpoint and a valid export."""
    seed = random.randrange(2**31)
    rng = random.Random(seed)
    train_dir = tmp_path / "train"
    total = 24  # never reached by the killed runs
    args = smoke_args(train_dir, f"--iterations={total}", "--checkpoint_every=1",
                      "--log_every=1", "--keep_checkpoints=2")
    saved = 0
    kills = 2
    for attempt in range(kills):
        log = open(tmp_path / f"attempt{attempt}.log", "w")
        proc = subprocess.Popen([sys.executable, MAIN, *args], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            # wait until this attempt has completed a checkpoint, then kill at a random moment
            while latest_number(train_dir) <= saved:
                assert proc.poll() is None, (
                    f"attempt {attempt} exited {proc.returncode} (seed {seed}):\n"
                    + (tmp_path / f"attempt{attempt}.log").read_text())
                assert time.time() < deadline, f"attempt {attempt} saved nothing (seed {seed})"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.2))
            assert proc.poll() is None, f"finished before the kill (seed {seed})"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            log.close()
        assert proc.returncode == -signal.SIGKILL
        latest = latest_checkpoint(train_dir)
        step = checkpoint_step(latest)  # the newest checkpoint named in the state is readable
        assert step > saved and latest.endswith(f"ckpt-{step}"), f"seed {seed}"
        saved = step

    final = saved + 2  # any number above `saved`: a short finish keeps the test fast
    rc, out, err = run_main(*smoke_args(train_dir, f"--iterations={final}", "--log_every=1"))
    assert rc == 0, f"seed {seed}:\n{err}"
    assert f"resuming from step {saved} -> {final}" in out
    assert latest_checkpoint(train_dir).endswith(f"ckpt-{final}")
    # A step trained both before a kill and after the resume printed the same losses: the
    # data position and the noise stream were restored, not restarted.
    outputs = [(tmp_path / f"attempt{a}.log").read_text() for a in range(kills)] + [out]
    losses = {}
    for text in outputs:
        for step, values in re.findall(r"step (\d+)/\d+  (.*?)  [\d.]+ steps/s", text):
            assert losses.setdefault(step, values) == values, f"step {step} (seed {seed})"
    assert {str(s) for s in range(1, saved + 1)} <= set(losses)  # the pattern did match
    assert restore_gan_checkpoint(train_dir) == final
    generator, manifest = gan.load_generator(str(train_dir), "mnist")  # sha256-verified export
    assert manifest["iterations"] == final


# --- refusals -----------------------------------------------------------------------------------

def test_checkpoint_in_the_session_1_critic_layout_resumes_and_is_rewritten_in_the_new_one(
        tmp_path):
    # Session-1 checkpoints kept the critic's convolutions in a list, invisible to
    # tf.train.Checkpoint: only `out` was saved under the critic, the convolutions only under
    # the critic's optimizer.
    model = gan.build_wgan(latent_dim=128, critic_iters=2)
    rng = np.random.default_rng(5)
    for var in model.critic.conv1.weights:
        var.assign(rng.normal(0.0, 0.3, var.shape).astype(np.float32))
    expected = model.critic.conv1.kernel.numpy()
    legacy = gan_checkpoint(model, SMOKE_ITERATIONS - 1,
                            critic=tf.train.Checkpoint(out=model.critic.out))
    old = tf.train.CheckpointManager(legacy, str(tmp_path / training.CKPT_SUBDIR), 5).save(
        checkpoint_number=SMOKE_ITERATIONS - 1)
    assert not any(k.startswith("critic/conv") for k in
                   tf.train.load_checkpoint(old).get_variable_to_shape_map())

    code, out, err = run_main(*smoke_args(tmp_path))
    assert code == 0, err
    assert f"resuming from step {SMOKE_ITERATIONS - 1}" in out
    new = tf.train.load_checkpoint(latest_checkpoint(tmp_path))
    kernel = new.get_tensor("critic/conv1/_kernel/.ATTRIBUTES/VARIABLE_VALUE")
    # One more step of Adam (lr 1e-4, 2 critic steps) moves each weight by about 2e-4.
    np.testing.assert_allclose(kernel, expected, atol=2e-3)


def test_truncated_checkpoint_data_file_exits_2_naming_train_dir_and_touches_nothing(smoke_copy):
    data_file = smoke_copy / training.CKPT_SUBDIR / (
        f"ckpt-{SMOKE_ITERATIONS}.data-00000-of-00001")
    data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 2])
    before = tree_digest(smoke_copy)
    rc, out, err = run_main_here(*smoke_args(smoke_copy, "--iterations=6"))
    assert rc == 2, err
    line = error_line(err)
    assert "--train_dir" in line and f"ckpt-{SMOKE_ITERATIONS}" in line
    assert tree_digest(smoke_copy) == before
    assert "step" not in out  # did not start training


def test_checkpoint_of_another_model_in_train_dir_exits_2_naming_train_dir(tmp_path):
    train_dir = tmp_path / "train"
    foreign = tf.train.Checkpoint(weights=tf.Variable([1.0, 2.0]), bias=tf.Variable(3.0))
    tf.train.CheckpointManager(foreign, str(train_dir / training.CKPT_SUBDIR), 3).save()
    before = tree_digest(train_dir)
    rc, out, err = run_main_here(*smoke_args(train_dir))
    assert rc == 2, err
    assert "--train_dir" in error_line(err)
    assert tree_digest(train_dir) == before


def test_train_dir_that_is_an_existing_file_exits_2_naming_train_dir(tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("keep me")
    rc, out, err = run_main_here(*smoke_args(path))
    assert rc == 2
    line = error_line(err)
    assert "--train_dir" in line and str(path) in line
    assert path.read_text() == "keep me"


def test_train_dir_that_cannot_be_created_exits_2_naming_train_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, out, err = run_main_here(*smoke_args(blocker / "sub"))  # root ignores chmod; ENOTDIR doesn't
    assert rc == 2, err
    assert "--train_dir" in error_line(err)


def test_the_modes_fail_fast_check_of_a_new_train_dir_leaves_no_folder(tmp_path):
    train_dir = tmp_path / "a" / "b" / "train"
    training.prepare_train_dir(str(train_dir), create=False)
    assert list(tmp_path.iterdir()) == []


def test_the_check_still_refuses_a_train_dir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="--train_dir"):
        training.prepare_train_dir(str(tmp_path / "file" / "train"), create=False)


@pytest.mark.parametrize("flag, value", [("iterations", "0"), ("batch_size", "-1"),
                                         ("fgsm_eps", "2")])
def test_out_of_range_flag_exits_nonzero_naming_the_flag(tmp_path, flag, value):
    rc, out, err = run_main_here(*smoke_args(tmp_path / "train", f"--{flag}={value}"))
    assert rc != 0
    assert f"--{flag}" in error_line(err)
    assert not (tmp_path / "train").exists()


def test_unknown_mode_is_rejected_naming_mode(tmp_path):
    rc, out, err = run_main_here(*smoke_args(tmp_path / "train", "--mode=dance"))
    assert rc != 0
    assert "--mode" in err and "dance" in err
    assert not (tmp_path / "train").exists()


def test_flag_given_after_flagfile_overrides_the_flagfile():
    cli.define_flags()
    flags = cli.FLAGS
    try:
        flags(["main.py", f"--flagfile={SMOKE_FLAGFILE}", "--iterations=7"])
        cfg = cli.from_flags()
    finally:
        flags.unparse_flags()
    assert cfg.iterations == 7
    assert cfg.batch_size == 8 and cfg.critic_iters == 2  # the rest still from the flagfile


def test_train_dir_inside_shipped_checkpoints_is_refused():
    target = os.path.join(REPO, "checkpoints", "mnist", "_test_refused_train_dir")
    assert not os.path.exists(target)
    try:
        rc, out, err = run_main_here(*smoke_args("checkpoints/mnist/_test_refused_train_dir"))
        assert rc == 2
        line = error_line(err)
        assert "--train_dir" in line and "checkpoints" in line
        assert not os.path.exists(target)
    finally:
        if os.path.isdir(target):  # only if the refusal failed: never leave it in the repo
            import shutil
            shutil.rmtree(target)


def test_train_dir_reaching_shipped_checkpoints_through_a_symlink_is_refused(tmp_path):
    (tmp_path / "link").symlink_to(os.path.join(REPO, "checkpoints"))
    cfg = config.Config(mode="train_gan", train_dir=str(tmp_path / "link" / "mnist" / "run"))
    with pytest.raises(ConfigError, match="--train_dir"):
        config.validate(cfg)


# --- NaN ----------------------------------------------------------------------------------------

def test_nan_loss_raises_training_error_and_keeps_the_last_checkpoint(tmp_path):
    value = tf.Variable(0.0)

    def make_step_fn(start_step):
        def step_fn(step):
            value.assign(float(step + 1))
            return {"loss": tf.constant(float("nan") if step + 1 == 3 else 1.0)}
        return step_fn

    train_dir = str(tmp_path / "train")
    with pytest.raises(TrainingError, match=r"loss at step 3") as err:
        training.run(train_dir, {"value": value}, make_step_fn, 10, log_every=1,
                     checkpoint_every=1, keep=5, flags={})
    assert "ckpt-2" in str(err.value) and "\n" not in str(err.value)
    assert latest_checkpoint(train_dir).endswith("ckpt-2")
    restored_value, restored_step = tf.Variable(-1.0), tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(step=restored_step, wall_clock=tf.Variable(0.0, dtype=tf.float64),
                        value=restored_value).restore(
        latest_checkpoint(train_dir)).assert_consumed()
    assert int(restored_step.numpy()) == 2 and float(restored_value.numpy()) == 2.0


# --- export -------------------------------------------------------------------------------------

def test_export_manifest_holds_the_sha256_of_every_weight_file(smoke_run):
    export = smoke_run.train_dir / training.EXPORT_SUBDIR
    manifest = json.loads((export / checkpoints.MANIFEST).read_text())
    weight_files = sorted(p.name for p in export.iterdir() if p.name.startswith("weights."))
    assert sorted(manifest["files"]) == weight_files and len(weight_files) >= 2
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((export / name).read_bytes()).hexdigest() == digest
    assert manifest["kind"] == "generator" and manifest["dataset"] == "mnist"
    assert manifest["iterations"] == SMOKE_ITERATIONS


def test_export_records_the_validation_wasserstein_and_a_rerun_reproduces_it(smoke_copy):
    manifest_path = smoke_copy / training.EXPORT_SUBDIR / checkpoints.MANIFEST
    first = json.loads(manifest_path.read_text())["metrics"]
    assert first["validation_images"] == 1000 and math.isfinite(first["validation_wasserstein"])
    manifest_path.unlink()
    # At the requested step already: nothing is trained, the export is rewritten.
    rc, out, err = run_main(*smoke_args(smoke_copy, f"--iterations={SMOKE_ITERATIONS}"))
    assert rc == 0, err
    assert json.loads(manifest_path.read_text())["metrics"] == first


def test_exported_generator_loads_and_generates(smoke_run):
    generator, manifest = gan.load_generator(str(smoke_run.train_dir), "mnist")
    assert generator.count_params() == 1_554_177
    images = generator(tf.zeros([2, manifest["latent_dim"]])).numpy()
    assert images.shape == (2, 28, 28, 1)
    assert np.all((images >= 0) & (images <= 1))


def test_modified_export_weight_file_raises_config_error_naming_the_file(smoke_run, tmp_path):
    export = tmp_path / "export"
    import shutil
    shutil.copytree(smoke_run.train_dir / training.EXPORT_SUBDIR, export)
    weights = export / "weights.data-00000-of-00001"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="sha256") as err:
        gan.load_generator(str(export), "mnist")
    assert str(weights) in str(err.value)
    assert re.match(r"--gan_dir: ", str(err.value))
