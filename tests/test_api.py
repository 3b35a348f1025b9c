"""The Python API (defense_gan.load_generator / load_classifier / Purifier /
DefendedClassifier): equal to the command line's projection, any batch size, seeded, clear
errors, and the gradient each mode promises. Tiny settings (L=3, R=2, chunks of 4 images)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, dense_generator

import defense_gan
from defense_gan import data, paths, rec_cache

L, R, CHUNK = 3, 2, 4


@pytest.fixture(scope="module")
def dense_purifier():
    """A Purifier over a dense generator whose projection makes real progress in 3 steps."""
    return defense_gan.Purifier(dense_generator(0), rec_iters=L, rec_rr=R, rec_lr=0.5,
                                batch_size=CHUNK, seed=0)


@pytest.fixture(scope="module")
def images():
    """The first 10 MNIST test images, float32 [10, 28, 28, 1] in [0, 1] (3 chunks of 4)."""
    return data.to_float(data.load("mnist").x_test[:10]).numpy()


def test_importing_the_package_registers_no_flags_and_loads_no_tensorflow():
    code = ("import sys, defense_gan; from absl import flags; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "assert not list(flags.FLAGS), list(flags.FLAGS); "
            "assert 'Purifier' in dir(defense_gan); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_purify_equals_the_whitebox_projection_of_each_padded_batch(dense_purifier, images):
    x_rec, mse, _ = rec_cache.reconstruct(images, dense_purifier.projector, seed=0)
    np.testing.assert_array_equal(dense_purifier.purify(images), x_rec)
    np.testing.assert_array_equal(dense_purifier.reconstruction_error(images), mse)


def test_purify_moves_the_images_onto_the_generator_range(dense_purifier, images):
    x_rec = dense_purifier.purify(images)
    assert x_rec.shape == images.shape and x_rec.dtype == np.float32
    assert np.abs(x_rec - images).max() > 0.1  # the images did change
    assert 0.0 <= x_rec.min() and x_rec.max() <= 1.0


def test_reconstruction_error_is_the_per_image_mse_of_the_purified_image(dense_purifier,
                                                                         images):
    expected = ((dense_purifier.purify(images) - images) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(dense_purifier.reconstruction_error(images), expected,
                               rtol=1e-5)


def test_any_batch_size_gives_each_image_the_result_of_its_chunk(dense_purifier, images):
    full = dense_purifier.purify(images)
    # Image 9 is alone in chunk 2 ([seed, 2]); as the first of a 2-image call it is chunk 0.
    np.testing.assert_array_equal(dense_purifier.purify(images[:5])[:4], full[:4])
    assert dense_purifier.purify(images[:0]).shape == (0, 28, 28, 1)
    assert dense_purifier.purify(images[:1]).shape == (1, 28, 28, 1)


def test_numpy_in_gives_numpy_out_and_tensor_in_gives_tensor_out(dense_purifier, images):
    out_np = dense_purifier.purify(images[:3])
    out_tf = dense_purifier.purify(tf.constant(images[:3]))
    assert isinstance(out_np, np.ndarray) and isinstance(out_tf, tf.Tensor)
    np.testing.assert_array_equal(out_np, out_tf.numpy())
    # float64 pixels (e.g. uint8 / 255.0) are cast, not refused
    np.testing.assert_array_equal(dense_purifier.purify(images[:3].astype(np.float64)), out_np)


def test_the_same_seed_repeats_and_another_seed_draws_other_restarts(dense_purifier, images):
    a = dense_purifier.purify(images[:4])
    np.testing.assert_array_equal(dense_purifier.purify(images[:4]), a)
    assert np.abs(dense_purifier.purify(images[:4], seed=1) - a).max() > 1e-3


@pytest.mark.parametrize("bad, words", [
    (lambda x: (x * 255).astype(np.uint8), ("x:", "uint8", "255")),
    (lambda x: x * 255, ("x:", "[0, 1]", "255")),
    (lambda x: x[..., 0], ("x:", "shape", "[10, 28, 28]")),
    (lambda x: np.where(x > 0.5, np.nan, x), ("x:", "finite")),
])
def test_bad_images_raise_a_value_error_naming_the_argument(dense_purifier, images, bad, words):
    with pytest.raises(ValueError) as err:
        dense_purifier.purify(bad(images))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_bad_settings_raise_value_errors_naming_the_argument(dense_purifier, tiny_classifier):
    generator = dense_purifier.generator
    cases = [(lambda: defense_gan.Purifier(generator, rec_iters=0), "rec_iters"),
             (lambda: defense_gan.Purifier(generator, seed=1.5), "seed"),
             (lambda: defense_gan.Purifier(generator, precision="fp8"), "precision"),
             (lambda: defense_gan.DefendedClassifier(tiny_classifier, dense_purifier,
                                                     gradient="eot"), "gradient"),
             (lambda: defense_gan.DefendedClassifier(tiny_classifier, generator), "purifier"),
             (lambda: defense_gan.load_generator("nowhere/gan"), "dataset"),
             (lambda: defense_gan.load_classifier("G"), "model")]
    for make, name in cases:
        with pytest.raises(ValueError, match=f"^{name}:"):
            make()


def _gradient(fn, x, weights):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(fn(x) * weights)
    return tape.gradient(out, x).numpy()


@pytest.mark.parametrize("mode", ["bpda", "classifier"])
def test_defended_logits_are_the_classifier_on_purified_images_with_the_mode_gradient(
        dense_purifier, tiny_classifier, images, mode):
    model = defense_gan.DefendedClassifier(tiny_classifier, dense_purifier, gradient=mode)
    x = images[:6]
    x_rec = dense_purifier.purify(x)
    np.testing.assert_allclose(model(x).numpy(), tiny_classifier(x_rec).numpy(), atol=1e-5)
    weights = tf.constant(np.random.RandomState(1).randn(6, 10).astype(np.float32))
    at = x_rec if mode == "bpda" else x  # where the classifier's gradient is taken
    expected = _gradient(lambda v: tiny_classifier(v, training=False), at, weights)
    np.testing.assert_allclose(_gradient(model, x, weights), expected, rtol=1e-4, atol=1e-6)
    assert np.abs(expected).max() > 0


def test_shipped_models_load_by_name_and_by_folder_and_from_checkpoints_dir(tmp_path):
    by_name = defense_gan.load_classifier("E")
    folder = os.path.join(paths.checkpoints_root(), "mnist", "classifier_E")
    by_folder = defense_gan.load_classifier(folder)
    x = np.random.RandomState(0).rand(2, 28, 28, 1).astype(np.float32)
    np.testing.assert_array_equal(by_name(x).numpy(), by_folder(x).numpy())
    assert by_name.defense_gan_manifest["architecture"].endswith("_E")
    with pytest.raises(ValueError, match="^model: no shipped classifier 'E'"):
        defense_gan.load_classifier("E", checkpoints_dir=str(tmp_path))
    generator = defense_gan.load_generator("mnist")
    assert generator.defense_gan_manifest["kind"] == "generator"
