"""Attacks on a tiny MLP classifier (model E) trained for a few seconds on 3,000 MNIST images."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from defense_gan import attacks, data, networks

N = 64          # Every attack sees batches of exactly N images (one trace per function).
EPS = 0.3
TOL = 1e-6      # Float slack on the L-inf budget.


@pytest.fixture(scope="module")
def setup():
    """(model, x [N, 28, 28, 1] float32 in [0, 1], y int64 [N], x_uint8 [N, 28, 28, 1])."""
    keras.utils.set_random_seed(0)
    splits = data.load("mnist")
    x_train = data.to_float(splits.x_train[:3000]).numpy()
    model = networks.build(networks.Classifier("E"), networks.MNIST_SHAPE)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, splits.y_train[:3000], batch_size=50, epochs=4, verbose=0)
    x_uint8 = splits.x_test[:N]
    return model, data.to_float(x_uint8).numpy(), splits.y_test[:N], x_uint8


@pytest.fixture(scope="module")
def cw_attack(setup):
    """The release's CW-L2 settings, wrapped once for the whole module."""
    return attacks.make_attack("cw", setup[0], cw_iters=100, cw_lr=10.0, cw_c=100.0)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x).numpy(), 1) == y))


def linf(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_tiny_model_is_accurate(setup):
    model, x, y, _ = setup
    assert accuracy(model, x, y) >= 0.8


def test_fgsm_within_eps_in_range_and_lowers_accuracy(setup):
    model, x, y, _ = setup
    x_adv = attacks.fgsm(model, x, EPS).numpy()
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert linf(x_adv, x) <= EPS + TOL
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.5


def test_rand_fgsm_within_eps_and_in_range(setup):
    model, x, _, _ = setup
    x_adv = attacks.rand_fgsm(model, x, EPS, 0.05, seed=3).numpy()
    assert linf(x_adv, x) <= EPS + TOL
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_rand_fgsm_reproducible_with_same_seed(setup):
    model, x, _, _ = setup
    a = attacks.rand_fgsm(model, x, EPS, 0.05, seed=7).numpy()
    b = attacks.rand_fgsm(model, x, EPS, 0.05, seed=7).numpy()
    c = attacks.rand_fgsm(model, x, EPS, 0.05, seed=8).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pgd_within_eps_and_at_least_as_strong_as_fgsm(setup):
    model, x, y, _ = setup
    x_pgd = attacks.pgd(model, x, EPS, eps_iter=2.5 * EPS / 10, nb_iter=10, seed=0).numpy()
    assert linf(x_pgd, x) <= EPS + TOL
    assert x_pgd.min() >= 0.0 and x_pgd.max() <= 1.0
    assert accuracy(model, x_pgd, y) <= accuracy(model, attacks.fgsm(model, x, EPS), y)


def test_pgd_reproducible_with_same_seed(setup):
    model, x, _, _ = setup
    run = lambda seed: attacks.pgd(model, x, EPS, 0.1, 2, seed=seed).numpy()  # noqa: E731
    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_cw_moves_input(setup, cw_attack):
    _, x, _, _ = setup
    x_adv = cw_attack(x).numpy()
    l2 = np.sqrt(np.sum((x_adv - x) ** 2, axis=(1, 2, 3)))
    assert l2.mean() > 0.0
    assert np.sum(l2 > 0) >= N // 2
    assert x_adv.dtype == np.float32 and x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_cw_fools_model_on_changed_examples(setup, cw_attack):
    model, x, y, _ = setup
    x_adv = cw_attack(x).numpy()
    changed = np.any(x_adv != x, axis=(1, 2, 3))
    clean_pred = np.argmax(model(x).numpy(), 1)
    adv_pred = np.argmax(model(x_adv).numpy(), 1)
    assert np.mean(adv_pred[changed] != clean_pred[changed]) >= 0.9
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.5


def test_cw_compiles_once_and_keeps_learning_rate(setup, cw_attack):
    _, x, _, _ = setup
    cw_attack(x[::-1])
    assert cw_attack.cw._search.experimental_get_tracing_count() == 1
    assert float(cw_attack.cw.optimizer.learning_rate.numpy()) == 10.0


def test_cw_reset_zeroes_adam_slots_not_learning_rate(setup):
    model, x, _, _ = setup
    cw = attacks.CarliniWagnerL2(model, learning_rate=0.5, max_iterations=3,
                                 binary_search_steps=2, abort_early=False)
    cw(x[:8])
    assert int(cw.optimizer.iterations.numpy()) == 3  # Reset before the 2nd search step.
    for var in cw.optimizer.variables:
        var.assign(tf.ones(var.shape, var.dtype) * 3)
    cw.reset_optimizer()
    assert float(cw.optimizer.learning_rate.numpy()) == 3.0  # Not touched by the reset.
    assert int(cw.optimizer.iterations.numpy()) == 0
    assert all(not np.any(v.numpy()) for v in cw.optimizer._momentums + cw.optimizer._velocities)


def test_cw_returns_input_where_no_adversarial_found(setup):
    model, x, _, _ = setup
    # One step records only the unperturbed point, which is never adversarial.
    x_adv = attacks.carlini_wagner_l2(model, x[:5], max_iterations=1, batch_size=8).numpy()
    np.testing.assert_array_equal(x_adv, x[:5])


@pytest.mark.parametrize("convert", [lambda u: u.astype(np.float64) / 255.0,
                                     lambda u: data.to_float(u)], ids=["float64", "uint8"])
def test_cw_casts_input_to_float32(setup, cw_attack, convert):
    model, _, y, x_uint8 = setup
    x_in = convert(x_uint8)
    x_adv = cw_attack(x_in).numpy()
    assert x_adv.dtype == np.float32
    assert np.any(x_adv != np.asarray(x_in, np.float32))
    assert accuracy(model, x_adv, y) < 0.5


def test_attacks_reject_unscaled_uint8_pixels(setup):
    model, _, _, x_uint8 = setup
    with pytest.raises(tf.errors.InvalidArgumentError):
        attacks.fgsm(model, x_uint8, EPS)


def test_make_attack_rejects_unknown_name(setup):
    with pytest.raises(ValueError, match="unknown attack"):
        attacks.make_attack("deepfool", setup[0])


def test_make_attack_runs_each_attack_within_budget(setup):
    model, x, _, _ = setup
    for name in ("fgsm", "rand_fgsm", "pgd"):
        attack = attacks.make_attack(name, model, eps=EPS, alpha=0.05, pgd_steps=2, seed=1)
        assert linf(attack(x), x) <= EPS + TOL, name


def test_make_attack_rand_fgsm_is_reproducible_across_runs(setup):
    model, x, _, _ = setup
    runs = [attacks.make_attack("rand_fgsm", model, eps=EPS, seed=4) for _ in range(2)]
    first = [a(x).numpy() for a in runs]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(runs[0](x).numpy(), first[0])  # Next batch, new noise.


def test_describe_is_plain_json_with_derived_settings():
    desc = attacks.describe("pgd", eps=0.3, pgd_steps=40, seed=2)
    assert desc["eps_iter"] == pytest.approx(2.5 * 0.3 / 40) and desc["nb_iter"] == 40
    assert json.loads(json.dumps(desc)) == desc
    cw = attacks.describe("cw")
    assert (cw["max_iterations"], cw["learning_rate"], cw["initial_const"],
            cw["binary_search_steps"]) == (100, 10.0, 100.0, 1)
    with pytest.raises(ValueError):
        attacks.describe("pgd", epsilon=0.3)


def test_pgd_noise_of_batch_k_does_not_depend_on_the_batches_run_before(setup):
    """A resumed or sharded run calls the attack for batch k first; it must draw what a
    one-process run draws for batch k."""
    model, x, _, _ = setup
    in_order = attacks.make_attack("pgd", model, eps=EPS, pgd_steps=2, seed=5)
    for k in range(3):
        third = in_order(x, batch=k).numpy()
    resumed = attacks.make_attack("pgd", model, eps=EPS, pgd_steps=2, seed=5)
    np.testing.assert_array_equal(resumed(x, batch=2).numpy(), third)
    assert not np.array_equal(resumed(x, batch=0).numpy(), third)


def test_true_label_attacks_say_so_and_use_the_labels_they_are_given(setup):
    """labels="true" only tells the caller to pass the true labels (evaluation does): the
    attack then moves away from them, not from the model's own prediction."""
    model, x, _, _ = setup
    other = tf.constant((np.argmax(model(x).numpy(), 1) + 1) % 10)  # labels the model disputes
    predicted = attacks.make_attack("fgsm", model, eps=EPS)
    true = attacks.make_attack("fgsm", model, eps=EPS, labels="true")
    assert (predicted.true_labels, true.true_labels) == (False, True)
    assert (predicted.settings["labels"], true.settings["labels"]) == (
        "model prediction unless given", "true labels")
    np.testing.assert_array_equal(true(x, other).numpy(), predicted(x, other).numpy())
    assert not np.array_equal(true(x, other).numpy(), predicted(x).numpy())
    with pytest.raises(ValueError, match="--attack_labels"):
        attacks.make_attack("fgsm", model, labels="guessed")


def test_cw_does_not_stop_early_on_the_noisy_loss_of_an_eot_model():
    """A model whose loss never moves: CW stops at its first check unless the logits are EOT
    draws [N, D, K], whose loss is a fresh random estimate each step."""
    for eot, expected in ((False, lambda n: n < 100), (True, lambda n: n == 100)):
        calls = tf.Variable(0)

        def model_fn(x, eot=eot):
            calls.assign_add(1)
            logits = tf.tile(tf.constant([[5.0] + [0.0] * 9]), [tf.shape(x)[0], 1])
            logits += 0.0 * tf.reduce_sum(x, [1, 2, 3])[:, None]
            return tf.stack([logits, logits], 1) if eot else logits
        cw = attacks.CarliniWagnerL2(model_fn, max_iterations=100, learning_rate=0.01,
                                     initial_const=1e-3, binary_search_steps=1)
        cw(tf.fill([2, 28, 28, 1], 0.5), tf.constant([0, 0]))
        assert expected(int(calls.numpy())), (eot, int(calls.numpy()))
