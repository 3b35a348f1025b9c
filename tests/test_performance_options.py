"""Performance options of the projection (issue 5): the early stop of restarts (--rec_prune_at,
--rec_keep), the bfloat16 path and its fallback on CPUs without bfloat16 arithmetic."""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import conftest
from conftest import REPO, SMOKE_CLASSIFIER_MODEL
import tensorflow as tf

from conftest import TINY_LATENT_DIM
from defense_gan import config, hardware, networks
from defense_gan.projection import ProjectionSettings, Projector

SHAPE = (28, 28, 1)
LATENT = TINY_LATENT_DIM
B, R = 3, 4
SEED = [5, 6]


@pytest.fixture(scope="module")
def dense_generator():
    return conftest.dense_generator(3, LATENT, SHAPE)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (B, *SHAPE)).astype(np.float32)


def make(generator, **kw):
    settings = dict(rec_iters=6, rec_rr=R, rec_lr=1.0, batch_size=B)
    settings.update(kw)
    return Projector(generator, SHAPE, LATENT, ProjectionSettings(**settings))


def original_projection(generator, x, seed, rec_iters, rec_rr, rec_lr, momentum=0.7):
    """The projection as it was before the early stop existed (one while_loop)."""
    batch = x.shape[0]

    @tf.function
    def run(x, seed):
        targets = tf.repeat(x, rec_rr, axis=0)
        z = tf.random.stateless_normal([batch * rec_rr, LATENT], seed=seed,
                                       stddev=1.0 / LATENT ** 0.5)

        def mse_of(z):
            return tf.reduce_mean(tf.square(generator(z, training=False) - targets), [1, 2, 3])

        def step(i, z, velocity):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = tf.reduce_sum(mse_of(z))
            velocity = momentum * velocity + tape.gradient(loss, z)
            return i + 1, z - rec_lr * velocity, velocity

        _, z, _ = tf.while_loop(lambda i, *_: i < rec_iters, step,
                                (tf.constant(0), z, tf.zeros_like(z)), parallel_iterations=1)
        mse = tf.reshape(mse_of(z), [batch, rec_rr])
        best = tf.argmin(mse, axis=1, output_type=tf.int32)
        flat = tf.range(batch) * rec_rr + best
        z_star = tf.gather(z, flat)
        return generator(z_star, training=False), z_star, tf.gather(tf.reshape(mse, [-1]), flat)

    return [t.numpy() for t in run(tf.constant(x), tf.constant(seed, tf.int32))]


def eager_pruned(generator, x, seed, rec_iters, rec_rr, rec_lr, prune_step, keep,
                 momentum=0.7):
    """The early stop written out eagerly: all restarts for prune_step steps, then the `keep`
    lowest-MSE restarts per image for the remaining steps; returns (z_star, mse)."""
    z = tf.random.stateless_normal([len(x) * rec_rr, LATENT], seed=seed,
                                   stddev=1.0 / LATENT ** 0.5).numpy().reshape(len(x), rec_rr, -1)
    v = np.zeros_like(z)

    def mse_grad(z_rows, targets):
        z_rows = tf.constant(z_rows)
        with tf.GradientTape() as tape:
            tape.watch(z_rows)
            mse = tf.reduce_mean(tf.square(generator(z_rows) - targets), [1, 2, 3])
            loss = tf.reduce_sum(mse)
        return mse.numpy(), tape.gradient(loss, z_rows).numpy()

    def descend(z, v, steps):
        n, r, d = z.shape
        targets = tf.repeat(x, r, axis=0)
        for _ in range(steps):
            _, g = mse_grad(z.reshape(n * r, d), targets)
            v = momentum * v + g.reshape(n, r, d)
            z = z - rec_lr * v
        return z, v, mse_grad(z.reshape(n * r, d), targets)[0].reshape(n, r)

    z, v, mse = descend(z, v, prune_step)
    order = np.argsort(mse, axis=1, kind="stable")[:, :keep]
    z = np.take_along_axis(z, order[..., None], 1)
    v = np.take_along_axis(v, order[..., None], 1)
    z, v, mse = descend(z, v, rec_iters - prune_step)
    best = mse.argmin(axis=1)
    return z[np.arange(len(x)), best], mse[np.arange(len(x)), best]


# --- early stop ---------------------------------------------------------------------------------

def test_pruning_is_off_by_default():
    settings = ProjectionSettings()
    assert settings.rec_prune_at == 0.0 and not settings.pruning
    assert settings.prune_step() == settings.rec_iters
    assert "rec_prune_at" not in settings.cache_key()  # caches of the faithful setting unchanged
    assert config.Config().rec_prune_at == 0.0 and config.Config().rec_keep == 2


def test_default_projection_is_identical_to_the_code_before_the_early_stop(dense_generator,
                                                                           images):
    new = [t.numpy() for t in make(dense_generator)(images, SEED)]
    old = original_projection(dense_generator, images, SEED, 6, R, 1.0)
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)


def test_pruned_projection_is_a_valid_projection(dense_generator, images):
    p = make(dense_generator, rec_prune_at=0.5, rec_keep=2)
    x_rec, z_star, mse = [t.numpy() for t in p(images, SEED)]
    p(images, [7, 8])
    assert p.traces == 1
    assert x_rec.shape == (B, *SHAPE) and z_star.shape == (B, LATENT) and mse.shape == (B,)
    assert x_rec.dtype == z_star.dtype == mse.dtype == np.float32
    np.testing.assert_allclose(dense_generator(z_star).numpy(), x_rec, atol=1e-6)
    np.testing.assert_allclose(np.mean((x_rec - images) ** 2, axis=(1, 2, 3)), mse, rtol=1e-5)


def test_pruned_projection_matches_the_early_stop_written_out(dense_generator, images):
    p = make(dense_generator, rec_iters=6, rec_prune_at=0.5, rec_keep=2)
    assert p.settings.prune_step() == 3
    _, z_star, mse = [t.numpy() for t in p(images, SEED)]
    z_ref, mse_ref = eager_pruned(dense_generator, images, SEED, 6, R, 1.0, 3, 2)
    np.testing.assert_allclose(z_star, z_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mse, mse_ref, rtol=1e-4)


def test_keeping_the_winner_gives_the_faithful_result(dense_generator, images):
    """Restarts do not interact: with rec_keep = rec_rr - 1 the result changes only where the
    dropped restart would have won, and never gets a lower MSE than the full projection."""
    full = [t.numpy() for t in make(dense_generator)(images, SEED)]
    pruned = [t.numpy() for t in make(dense_generator, rec_prune_at=0.5, rec_keep=R - 1)(
        images, SEED)]
    assert np.all(pruned[2] >= full[2] - 1e-6)
    same = np.isclose(pruned[2], full[2], rtol=1e-5)
    np.testing.assert_allclose(pruned[1][same], full[1][same], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw, flag", [
    (dict(rec_prune_at=1.0), "rec_prune_at"), (dict(rec_prune_at=-0.1), "rec_prune_at"),
    (dict(rec_prune_at=0.5, rec_keep=10), "rec_keep"), (dict(rec_keep=0), "rec_keep")])
def test_bad_early_stop_settings_are_refused_naming_the_flag(kw, flag):
    with pytest.raises(ValueError, match=f"--{flag}"):
        ProjectionSettings(rec_rr=10, **kw).validate()
    with pytest.raises(config.ConfigError, match=f"^--{flag}:"):
        config.validate(config.Config(**kw))


def test_good_early_stop_settings_are_accepted():
    cfg = config.validate(config.Config(rec_prune_at=0.25, rec_keep=3))
    assert (cfg.rec_prune_at, cfg.rec_keep) == (0.25, 3)
    assert ProjectionSettings(rec_iters=200, rec_prune_at=0.25, rec_keep=3).prune_step() == 50


# --- bfloat16 -----------------------------------------------------------------------------------

CPUINFO_AVX2 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx avx2 fma\n"
CPUINFO_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"


def test_bf16_falls_back_to_float32_with_a_message_on_a_cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(hardware, "read_cpuinfo", lambda path=hardware.CPUINFO: CPUINFO_AVX2)
    monkeypatch.setattr(hardware, "has_gpu", lambda: False)
    out = io.StringIO()
    assert hardware.resolve_precision("bfloat16", out=out) == "float32"
    message = out.getvalue()
    assert message.count("\n") == 1 and "bfloat16" in message and "float32" in message
    assert "avx512_bf16" in message


def test_bf16_is_kept_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(hardware, "read_cpuinfo", lambda path=hardware.CPUINFO: CPUINFO_BF16)
    out = io.StringIO()
    assert hardware.resolve_precision("bfloat16", out=out) == "bfloat16"
    assert out.getvalue() == ""
    assert hardware.resolve_precision("float32", out=out) == "float32"
    assert hardware.bf16_cpu_flags(CPUINFO_BF16) == ["avx512_bf16"]
    assert hardware.bf16_cpu_flags(CPUINFO_AVX2) == []


def test_bf16_is_kept_with_a_gpu(monkeypatch):
    monkeypatch.setattr(hardware, "read_cpuinfo", lambda path=hardware.CPUINFO: CPUINFO_AVX2)
    monkeypatch.setattr(hardware, "has_gpu", lambda: True)
    assert hardware.resolve_precision("bfloat16", out=io.StringIO()) == "bfloat16"


def test_bf16_projection_is_float32_and_close_to_the_float32_one(tiny_generator, images):
    bf16 = networks.build(networks.Generator(LATENT, dim=4, precision="bfloat16"), (LATENT,))
    bf16.set_weights(tiny_generator.get_weights())
    kw = dict(rec_iters=4, rec_rr=2, rec_lr=10.0)
    ref = [t.numpy() for t in make(tiny_generator, **kw)(images, SEED)]
    out = [t.numpy() for t in make(bf16, **kw)(images, SEED)]
    assert all(t.dtype == np.float32 for t in out)
    assert [t.shape for t in out] == [t.shape for t in ref]
    np.testing.assert_allclose(out[0], ref[0], atol=2e-2)   # images: bf16 has ~3 digits
    np.testing.assert_allclose(out[2], ref[2], rtol=5e-2)   # MSE
    np.testing.assert_allclose(np.mean((out[0] - images) ** 2, axis=(1, 2, 3)), out[2],
                               rtol=1e-5)                   # MSE of the output, in float32


# --- benchmarks/accuracy_check.py ---------------------------------------------------------------

def accuracy_check(smoke_run, smoke_classifier, tmp_path, *extra):
    """Run benchmarks/accuracy_check.py on the smoke checkpoints; `extra` flags come last."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "accuracy_check.py"),
         f"--gan_dir={smoke_run.train_dir}/export",
         f"--classifier_dir={smoke_classifier.train_dir}/export",
         f"--model={SMOKE_CLASSIFIER_MODEL}", "--num_tests=5", "--batch_size=2",
         "--rec_iters=3", "--rec_rr=2", "--precision=float32", "--rec_prune_at=0.5",
         "--rec_keep=1", f"--cache_dir={tmp_path}", f"--out={tmp_path / 'report.json'}",
         *extra],
        capture_output=True, text=True, timeout=300)


def run_accuracy_check(smoke_run, smoke_classifier, tmp_path):
    proc = accuracy_check(smoke_run, smoke_classifier, tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp_path / "report.json").read_text())


@pytest.fixture(scope="module")
def checked_once(smoke_run, smoke_classifier, tmp_path_factory):
    """A folder holding the cache and report.json of one measured accuracy_check run."""
    folder = tmp_path_factory.mktemp("accuracy_check")
    run_accuracy_check(smoke_run, smoke_classifier, folder)
    return folder


@pytest.fixture
def checked(checked_once, tmp_path):
    """A private copy of `checked_once` (cache and report) in tmp_path: (tmp_path, report)."""
    shutil.copytree(checked_once, tmp_path, dirs_exist_ok=True)
    return tmp_path, json.loads((tmp_path / "report.json").read_text())


def test_accuracy_check_refuses_a_cache_dir_that_is_a_file_in_one_line(
        smoke_run, smoke_classifier, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    proc = accuracy_check(smoke_run, smoke_classifier, tmp_path, f"--cache_dir={taken}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --cache_dir: '{taken}' exists and is not a directory")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "report.json").exists()


def test_accuracy_check_reports_both_settings_then_resumes_from_the_cache(
        smoke_run, smoke_classifier, checked):
    tmp_path, first = checked
    assert first["num_tests"] == 5 and first["faithful"]["images_per_second"] > 0
    assert first["fast"]["settings"]["rec_prune_at"] == 0.5
    (tmp_path / "report.json").unlink()
    again = run_accuracy_check(smoke_run, smoke_classifier, tmp_path)
    assert again["faithful"]["images_per_second"] is None  # every batch came from the cache
    assert again["fast"]["images_per_second"] is None
    for name in ("faithful", "fast"):
        assert again[name]["accuracy"] == first[name]["accuracy"]
        assert again[name]["mean_mse"] == first[name]["mean_mse"]


def test_accuracy_check_rerun_from_the_cache_keeps_the_measured_report(
        smoke_run, smoke_classifier, checked):
    tmp_path, first = checked
    written = (tmp_path / "report.json").read_bytes()
    proc = accuracy_check(smoke_run, smoke_classifier, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "kept it" in proc.stdout
    assert (tmp_path / "report.json").read_bytes() == written
    assert first["fast"]["images_per_second"] > 0


def test_accuracy_check_rewrites_a_report_of_other_settings(
        smoke_run, smoke_classifier, checked):
    tmp_path, _ = checked
    report = json.loads((tmp_path / "report.json").read_text())
    report["fast"]["accuracy"] = -1.0  # an earlier report that disagrees with the cache
    (tmp_path / "report.json").write_text(json.dumps(report))
    again = run_accuracy_check(smoke_run, smoke_classifier, tmp_path)
    assert again["fast"]["accuracy"] >= 0.0
    assert again["fast"]["images_per_second"] is None


# --- benchmarks/layers.py -----------------------------------------------------------------------

def test_layer_flop_counts_match_the_generator_kernels_and_sum_to_the_step_count():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import layers as bench_layers
    import projection as bench_projection
    g = networks.build(networks.Generator(128, 64), (128,))
    input_pixels = {"fc": 1, "deconv1": 4 * 4, "deconv2": 7 * 7, "deconv3": 14 * 14}
    from_kernels = {name: 2 * input_pixels[name] * int(np.prod(getattr(g, name).kernel.shape))
                    for name in input_pixels}
    assert bench_layers.layer_flops(1) == from_kernels
    assert sum(from_kernels.values()) == bench_projection.generator_forward_flops()
