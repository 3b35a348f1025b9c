"""defense_gan/substitute.py: Jacobian augmentation against a hand computation, CleverHans'
batch order, and the resumable substitute training loop with toy oracles."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from defense_gan import networks, substitute


def linear_model(w):
    """x [N, 2, 2, 1] -> logits x_flat @ w (w float32 [4, K])."""
    return lambda x: tf.reshape(tf.cast(x, tf.float32), [-1, 4]) @ w


def test_jacobian_augmentation_doubles_the_set_and_moves_new_points_by_lambda_sign_grad():
    rng = np.random.RandomState(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    x = rng.uniform(size=(5, 2, 2, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    # d softmax(x w)_y / dx = p_y (w[:, y] - sum_j p_j w[:, j]), by hand.
    logits = x.reshape(5, 4) @ w
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = p[np.arange(5), y][:, None] * (w[:, y].T - p @ w.T)
    expected = x + 0.1 * np.sign(grad).reshape(x.shape)
    out = substitute.jacobian_augmentation(linear_model(w), x, y, 0.1, batch_size=2).numpy()
    assert out.shape == (10, 2, 2, 1)
    np.testing.assert_array_equal(out[:5], x)
    np.testing.assert_allclose(out[5:], expected, atol=1e-6)
    np.testing.assert_allclose(np.abs(out[5:] - x), 0.1, atol=1e-6)  # every pixel moved


def test_the_releases_cleverhans_augmentation_overwrites_even_slots_in_order_chained():
    x = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1) * 10  # 0, 10, 20, 30
    signs = np.array([1, -1, 1, 1], np.float32).reshape(4, 1, 1, 1)
    out = substitute.cleverhans2017_layout(x, signs, 0.5)[:, 0, 0, 0]
    # X = [x; x]; X[0] = X[0]+.5; X[2] = X[1]-.5; X[4] = X[2]+.5 (already changed); X[6] = X[3]+.5
    np.testing.assert_array_equal(out, [0.5, 10, 9.5, 30, 10, 10, 30.5, 30])


def test_training_with_the_releases_augmentation_keeps_old_labels_on_changed_points(
        images, tmp_path):
    x0, held_out = images
    model = networks.build(networks.Classifier("E"), networks.MNIST_SHAPE)
    state = substitute.SubstituteState(str(tmp_path), "test")
    y0 = brightness_oracle()(x0, None)
    calls = []
    substitute.train_substitute(
        model, x0, y0, oracle=brightness_oracle(calls), oracle_batch_size=8,
        oracle_seed=lambda r, k: [0, k], state=state, rounds=2, epochs=1, lam=0.1,
        batch_size=8, lr=1e-3, seed=0, eval_x=held_out[:8],
        eval_y=brightness_oracle()(held_out[:8], None), progress=lambda line: None,
        augmentation="cleverhans2017")
    x, y = state.load_round(1, model)
    assert len(x) == 32 and sum(calls) == 16  # only the second half was asked
    np.testing.assert_array_equal(y[:16], y0)  # old labels on the first half ...
    assert not np.array_equal(x[:16], x0)  # ... whose even slots moved
    np.testing.assert_array_equal(x[17:32:2], x0[1::2])  # odd new slots: unchanged copies


def test_an_epoch_is_ceil_n_over_b_full_batches_covering_every_point():
    batches = substitute.batch_indices(7, 3, np.random.RandomState(1))
    assert [len(b) for b in batches] == [3, 3, 3]
    assert set(np.concatenate(batches)) == set(range(7))
    assert [len(b) for b in substitute.batch_indices(2, 50, np.random.RandomState(1))] == [2]


def brightness_oracle(calls=None, fail_after=None):
    """A trivial oracle: class 1 when the left half is brighter than the right, else 0. Counts
    the images it is asked about in `calls`; raises after `fail_after` calls (a kill)."""
    def oracle(x, seed):
        if calls is not None:
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt("killed")
            calls.append(len(x))
        x = np.asarray(x)
        return (x[:, :, :14].mean(axis=(1, 2, 3)) > x[:, :, 14:].mean(axis=(1, 2, 3))
                ).astype(np.int64)
    return oracle


@pytest.fixture(scope="module")
def images():
    from defense_gan import data
    x = data.to_float(data.load("mnist").x_test[:216]).numpy()
    return x[:16], x[16:]  # the attacker's initial points, held-out images


def train(state_dir, x0, held_out, oracle, rounds=3):
    keras.utils.set_random_seed(0)
    model = networks.build(networks.Classifier("E"), networks.MNIST_SHAPE)
    state = substitute.SubstituteState(str(state_dir), "test")
    history = substitute.train_substitute(
        model, x0, brightness_oracle()(x0, None), oracle=oracle, oracle_batch_size=8,
        oracle_seed=lambda r, k: [0, k], state=state, rounds=rounds, epochs=3, lam=0.1,
        batch_size=8, lr=1e-3, seed=0, eval_x=held_out,
        eval_y=brightness_oracle()(held_out, None), progress=lambda line: None)
    return model, history


def test_substitute_training_improves_agreement_with_a_trivial_oracle(images, tmp_path):
    x0, held_out = images
    untrained = networks.build(networks.Classifier("E"), networks.MNIST_SHAPE)
    before = substitute.accuracy(untrained, held_out, brightness_oracle()(held_out, None))
    calls = []
    _, history = train(tmp_path, x0, held_out, brightness_oracle(calls))
    assert [h["train_size"] for h in history] == [16, 32, 64]
    assert [h["oracle_queries"] for h in history] == [0, 16, 48]  # only new points are asked
    assert sum(calls) == 48
    assert history[-1]["substitute_accuracy"] > max(before, 0.6)


def test_a_killed_training_resumes_without_asking_again_and_ends_with_the_same_substitute(
        images, tmp_path):
    x0, held_out = images
    reference, ref_history = train(tmp_path / "whole", x0, held_out, brightness_oracle())
    calls = []
    with pytest.raises(KeyboardInterrupt):  # killed in round 2's labelling, after 2 batches
        train(tmp_path / "killed", x0, held_out, brightness_oracle(calls, fail_after=4))
    assert sum(calls) == 32  # round 1's 16 points, then 2 of round 2's 4 batches
    calls.clear()
    resumed, history = train(tmp_path / "killed", x0, held_out, brightness_oracle(calls))
    assert sum(calls) == 16  # only the 2 batches it had not got
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    strip = lambda hs: [{k: v for k, v in h.items() if "seconds" not in k} for h in hs]  # noqa
    assert strip(history) == strip(ref_history)
