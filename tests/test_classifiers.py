"""Classifiers A-F: shapes, the release's dropout, B/F, training steps (plain and FGSM
adversarial) and loading exported weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from defense_gan import checkpoints, classifiers, data, networks
from defense_gan.errors import ConfigError

N = 3


@pytest.fixture(scope="module")
def batch():
    """16 MNIST training digits: x float32 [16, 28, 28, 1] in [0, 1], y int64 [16]."""
    splits = data.load("mnist")
    return data.to_float(splits.x_train[:16]), tf.constant(splits.y_train[:16])


def dropout_rates(model: str) -> list:
    return [layer.rate for layer in networks.Classifier(model).stack
            if isinstance(layer, keras.layers.Dropout)]


def conv_config(layer) -> tuple:
    return (layer.filters, layer.kernel_size, layer.strides, layer.padding)


@pytest.mark.parametrize("model", list("ABCDEF"))
def test_every_architecture_builds_and_maps_images_to_ten_float32_logits(model):
    classifier = networks.build(networks.Classifier(model), networks.MNIST_SHAPE)
    logits = classifier(tf.random.uniform((N, *networks.MNIST_SHAPE), seed=0))
    assert logits.shape == (N, 10) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))
    assert not np.allclose(logits.numpy().sum(axis=1), 1.0)  # logits, not probabilities
    np.testing.assert_allclose(classifier.predict_proba(tf.zeros((N, 28, 28, 1))).numpy().sum(1),
                               1.0, rtol=1e-5)


@pytest.mark.parametrize("model, rates", [("A", [0.75, 0.5]), ("B", [0.8, 0.5]),
                                          ("C", [0.75, 0.5]), ("D", [0.5]), ("E", []),
                                          ("F", [])])
def test_dropout_rates_are_one_minus_the_releases_keep_probabilities(model, rates):
    assert dropout_rates(model) == pytest.approx(rates)


def test_model_b_drops_input_pixels_before_its_first_convolution():
    assert isinstance(networks.Classifier("B").stack[0], keras.layers.Dropout)


def test_model_f_is_model_b_without_dropout():
    b, f = (networks.build(networks.Classifier(m), networks.MNIST_SHAPE) for m in "BF")
    b_convs = [conv_config(l) for l in b.stack if isinstance(l, keras.layers.Conv2D)]
    f_convs = [conv_config(l) for l in f.stack if isinstance(l, keras.layers.Conv2D)]
    assert b_convs == f_convs and len(f_convs) == 3
    assert b.count_params() == f.count_params()
    f.set_weights(b.get_weights())  # same variables in the same order
    x = tf.random.uniform((N, *networks.MNIST_SHAPE), seed=1)
    np.testing.assert_allclose(f(x).numpy(), b(x, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_dropout_is_active_only_in_training():
    a = networks.build(networks.Classifier("A"), networks.MNIST_SHAPE)
    x = tf.random.uniform((N, *networks.MNIST_SHAPE), seed=2)
    np.testing.assert_array_equal(a(x, training=False).numpy(), a(x, training=False).numpy())
    assert not np.allclose(a(x, training=True).numpy(), a(x, training=False).numpy())


def test_a_few_compiled_train_steps_lower_the_loss_on_a_batch(batch):
    trainer = classifiers.build_trainer("E", lr=1e-3, seed=0)
    step = tf.function(trainer.train_step)
    before = float(classifiers.xent(batch[1], trainer.classifier(batch[0])))
    for _ in range(8):
        step(batch)
    after = float(classifiers.xent(batch[1], trainer.classifier(batch[0])))
    assert after < 0.7 * before, (before, after)


def test_adversarial_training_loss_exceeds_the_clean_loss_inside_tf_function(batch):
    """Same initial weights (build_trainer seeds them): the adversarial loss averages in the
    cross-entropy on FGSM images, which is higher than on the clean ones."""
    clean = classifiers.build_trainer("E", seed=0)
    adv = classifiers.build_trainer("E", seed=0, adv_eps=0.3)
    for a, b in zip(clean.classifier.get_weights(), adv.classifier.get_weights()):
        np.testing.assert_array_equal(a, b)
    clean_loss = float(tf.function(clean.train_step)(batch)["loss"])
    adv_loss = float(tf.function(adv.train_step)(batch)["loss"])
    assert adv_loss > clean_loss + 1e-3, (clean_loss, adv_loss)


def export_classifier(folder, model="A"):
    classifier = networks.build(networks.Classifier(model), networks.MNIST_SHAPE)
    checkpoints.export(str(folder), classifier, {
        "kind": "classifier", "dataset": "mnist",
        "architecture": classifiers.architecture_name(model), "model": model})
    return classifier


def test_load_classifier_restores_the_exported_weights(tmp_path):
    keras.utils.set_random_seed(4)
    original = export_classifier(tmp_path / "export", "A")
    loaded, manifest = classifiers.load_classifier(str(tmp_path / "export"), "mnist", "A")
    x = tf.random.uniform((N, *networks.MNIST_SHAPE), seed=3)
    np.testing.assert_array_equal(loaded(x).numpy(), original(x).numpy())
    assert manifest["architecture"] == "release_classifier_A"


def test_load_classifier_with_the_wrong_model_raises_config_error_naming_classifier_dir(
        tmp_path):
    export_classifier(tmp_path / "export", "A")
    with pytest.raises(ConfigError, match="--classifier_dir") as err:
        classifiers.load_classifier(str(tmp_path / "export"), "mnist", "B")
    assert "release_classifier_A" in str(err.value)
