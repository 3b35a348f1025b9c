"""defense_gan.predictors: the oracle a black-box attacker queries reuses what the mode has
already loaded (the classifier, a built MagNet) instead of loading it a second time."""

import numpy as np
import pytest
import tensorflow as tf

from defense_gan import magnet, predictors
from defense_gan.config import Config


def _refuse(*args, **kwargs):
    raise AssertionError("loaded again although the caller passed it in")


class _FixedLogits:
    """A defended model whose logits always favour class 3 (MagNet's interface)."""

    def logits(self, x):
        return (tf.one_hot(tf.fill([tf.shape(x)[0]], 3), 10),)


def test_a_magnet_oracle_reuses_the_callers_classifier_and_magnet(monkeypatch):
    monkeypatch.setattr(predictors, "evaluated_classifier", _refuse)
    monkeypatch.setattr(magnet, "build_defense", _refuse)
    manifest = {"folder": "classifier_A", "files": {"weights.index": "0" * 64}}
    loaded = predictors.Loaded(classifier=(object(), manifest),
                               magnet=(_FixedLogits(), {"magnet": {"folder": "m"}}, {}))
    oracle = predictors.batch_predictor(Config(defense="magnet"), "magnet", loaded=loaded)
    labels = oracle.predict(np.zeros([2, 28, 28, 1], np.float32), seed=[0, 0])
    assert list(labels) == [3, 3]
    assert oracle.checkpoints["magnet"] == {"folder": "m"}


def test_a_classifier_oracle_answers_with_the_callers_classifier(monkeypatch):
    monkeypatch.setattr(predictors, "evaluated_classifier", _refuse)
    manifest = {"folder": "classifier_A", "files": {}}
    classifier = lambda x, training: tf.one_hot(tf.fill([tf.shape(x)[0]], 7), 10)  # noqa: E731
    oracle = predictors.batch_predictor(Config(), "none", loaded=predictors.Loaded(
        classifier=(classifier, manifest)))
    assert list(oracle.predict(np.zeros([2, 28, 28, 1], np.float32), seed=[0, 0])) == [7, 7]


def test_a_defense_gan_oracle_reuses_a_generator_of_the_same_precision_only(monkeypatch):
    from defense_gan import gan
    monkeypatch.setattr(predictors, "evaluated_classifier", _refuse)
    monkeypatch.setattr(gan, "load_generator", _refuse)
    generator = tf.keras.Sequential([tf.keras.Input([4]), tf.keras.layers.Dense(28 * 28),
                                     tf.keras.layers.Reshape([28, 28, 1])])
    g_manifest = {"folder": "gan", "files": {}, "latent_dim": 4}
    loaded = predictors.Loaded(classifier=(lambda x, training: tf.zeros([2, 10]),
                                           {"folder": "c", "files": {}}),
                               generator=(generator, g_manifest, "float32"))
    projection = {"rec_iters": 2, "rec_rr": 1, "rec_prune_at": 0.0, "precision": "float32"}
    cfg = Config(defense="defense_gan", eval_batch_size=2)
    oracle = predictors.batch_predictor(cfg, "defense_gan", projection, loaded=loaded)
    assert oracle.checkpoints["generator"]["folder"] == "gan"
    assert list(oracle.predict(np.zeros([2, 28, 28, 1], np.float32), seed=[0, 0])) == [0, 0]
    other = dict(projection, precision="bfloat16")
    monkeypatch.setattr(predictors.hardware, "resolve_precision", lambda p: p)
    with pytest.raises(AssertionError, match="loaded again"):
        predictors.batch_predictor(cfg, "defense_gan", other, loaded=loaded)
