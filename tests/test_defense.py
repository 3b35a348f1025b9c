"""The defended classifier and the gradient it gives the attacker: `classifier` (the undefended
classifier's gradient) and `bpda` (forward through the projection, identity backward)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_LATENT_DIM
from defense_gan import attacks
from defense_gan.defense import DefendedClassifier
from defense_gan.projection import ProjectionSettings, Projector

B = 4
LABELS = tf.constant([0, 3, 5, 9], tf.int64)


@pytest.fixture(scope="module")
def defended(tiny_generator, tiny_classifier):
    projector = Projector(tiny_generator, (28, 28, 1), TINY_LATENT_DIM,
                          ProjectionSettings(rec_iters=2, rec_rr=2, rec_lr=1.0, batch_size=B))
    return DefendedClassifier(tiny_classifier, projector, seed=3)


@pytest.fixture(scope="module")
def x():
    """Pixels in [0.2, 0.8]: no FGSM step is clipped away."""
    return tf.constant(np.random.default_rng(0).uniform(0.2, 0.8, (B, 28, 28, 1)), tf.float32)


def loss_gradient(model_fn, x):
    """d/dx of the cross-entropy of model_fn(x) at fixed labels."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(LABELS, model_fn(x)))
    return tape.gradient(loss, x).numpy()


def projection_of(defended, x):
    """P(x) with the seed the BPDA forward pass uses."""
    return defended.projector(x, defended.attack_seed)[0]


def test_classifier_mode_gives_exactly_the_undefended_classifiers_gradient(defended, x):
    classifier = defended.classifier
    got = loss_gradient(defended.attack_model_fn("classifier"), x)
    np.testing.assert_array_equal(got, loss_gradient(lambda t: classifier(t), x))
    assert np.abs(got).max() > 0


def test_bpda_forward_value_is_the_classifier_on_the_projection(defended, x):
    logits = defended.attack_model_fn("bpda")(x)
    expected = defended.classifier(projection_of(defended, x))
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_bpda_gradient_is_the_classifiers_gradient_at_the_projection(defended, x):
    """Identity backward pass: d loss(C(P(x))) / dx := grad C at P(x), non-zero, and not the
    gradient at x itself."""
    got = loss_gradient(defended.attack_model_fn("bpda"), x)
    x_rec = projection_of(defended, x)
    np.testing.assert_allclose(got, loss_gradient(defended.classifier, x_rec), rtol=1e-5,
                               atol=1e-7)
    assert np.abs(got).max() > 0
    assert not np.allclose(got, loss_gradient(defended.classifier, x), rtol=1e-3, atol=1e-6)


def test_unknown_gradient_mode_raises_value_error_naming_the_flag(defended):
    with pytest.raises(ValueError, match="--gradient"):
        defended.attack_model_fn("through_the_projection")


def test_fgsm_through_bpda_perturbs_the_input_by_eps(defended, x):
    eps = 0.1
    x_adv = attacks.fgsm(defended.attack_model_fn("bpda"), x, eps).numpy()
    delta = np.abs(x_adv - x.numpy())
    assert delta.max() == pytest.approx(eps, abs=1e-6)
    assert np.mean(delta > eps / 2) > 0.5  # a sign step on most pixels, not a vanished gradient


def test_logits_of_the_defended_classifier_classify_the_projection(defended, x):
    logits, x_rec, mse = defended.logits(x, [0, 1])
    ref_rec, _, ref_mse = defended.projector(x, [0, 1])
    np.testing.assert_array_equal(x_rec.numpy(), ref_rec.numpy())
    np.testing.assert_array_equal(mse.numpy(), ref_mse.numpy())
    np.testing.assert_allclose(logits.numpy(), defended.classifier(ref_rec).numpy(), rtol=1e-6)


class CountingProjector:
    """A projector that counts the projections it runs (also inside tf.function / tf.cond)."""

    def __init__(self, projector):
        self.projector, self.settings = projector, projector.settings
        self.image_shape = projector.image_shape
        self.calls = tf.Variable(0)

    def __call__(self, x, seed):
        self.calls.assign_add(1)
        return self.projector(x, seed)


@pytest.fixture
def counted(defended):
    return DefendedClassifier(defended.classifier, CountingProjector(defended.projector), seed=3)


def test_bpda_fgsm_reuses_the_remembered_projection_and_is_unchanged(defended, counted, x):
    eps = 0.1
    reference = attacks.fgsm(defended.attack_model_fn("bpda"), x, eps).numpy()
    counted.remember(x, projection_of(counted, x), counted.attack_seed)
    counted.projector.calls.assign(0)
    x_adv = attacks.fgsm(counted.attack_model_fn("bpda"), x, eps).numpy()
    assert int(counted.projector.calls.numpy()) == 0
    np.testing.assert_array_equal(x_adv, reference)


@pytest.mark.parametrize("change", ["input", "seed"])
def test_bpda_projects_when_input_or_seed_differ_from_the_remembered_ones(counted, x, change):
    counted.remember(x, projection_of(counted, x), counted.attack_seed)
    if change == "input":
        x = x + 0.01
    else:
        counted.attack_seed.assign([3, 1])
    counted.projector.calls.assign(0)
    logits = counted.attack_model_fn("bpda")(x)
    assert int(counted.projector.calls.numpy()) == 1
    expected = counted.classifier(projection_of(counted, x))
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


class SeedLoggingProjector(CountingProjector):
    """Also records, in Python, the seed of every projection called eagerly."""

    def __init__(self, projector):
        super().__init__(projector)
        self.seeds = []

    def __call__(self, x, seed):
        self.seeds.append([int(s) for s in np.asarray(seed)])
        return super().__call__(x, seed)


@pytest.mark.parametrize("fresh_seed", [False, True])
def test_evaluate_reprojects_adversarial_images_with_a_seed_the_attack_never_used(
        defended, x, tmp_path, fresh_seed):
    from defense_gan import evaluation
    logged = DefendedClassifier(defended.classifier, SeedLoggingProjector(defended.projector),
                                seed=3)
    def identity_attack(images, y=None, batch=None):  # no projection inside the attack
        return images
    records, _ = evaluation.evaluate(
        np.concatenate([x.numpy(), x.numpy()]), np.array([0, 3, 5, 9] * 2),
        classifier=defended.classifier, attack=identity_attack, batch_size=B, seed=3,
        records_dir=str(tmp_path), settings={"t": 1}, defended=logged,
        fresh_seed=fresh_seed, progress=lambda line: None)
    attack_seeds = [[3, 0], [3, 1]]  # batch k's projections for the clean and attacked image
    fresh = [[3, k + evaluation.FRESH_SEED_OFFSET] for k in (0, 1)]
    expected = [[3, 0], [3, 0]] + ([fresh[0]] if fresh_seed else []) + \
        [[3, 1], [3, 1]] + ([fresh[1]] if fresh_seed else [])
    assert logged.projector.seeds == expected
    assert all(("pred_adv_defended_fresh_seed" in r) == fresh_seed for r in records)
    assert not set(map(tuple, fresh)) & set(map(tuple, attack_seeds))


def test_fast_batches_print_the_first_and_last_progress_lines_only(tmp_path, monkeypatch):
    from defense_gan import evaluation
    clock = iter(range(0, 1000))  # one "second" per call of time.time()
    monkeypatch.setattr(evaluation.time, "time", lambda: float(next(clock)))
    monkeypatch.setattr(evaluation, "PROGRESS_EVERY_SECONDS", 1e9)
    classifier = lambda images, training=False: tf.one_hot(  # noqa: E731
        tf.zeros(tf.shape(images)[0], tf.int32), 10)
    lines = []
    evaluation.evaluate(np.zeros([10, 28, 28, 1], np.float32), np.zeros(10, np.int64),
                        classifier=classifier, attack=lambda images, y=None, batch=None: images,
                        batch_size=2, seed=0, records_dir=str(tmp_path), settings={"t": 1},
                        progress=lines.append)
    assert [line.split()[1] for line in lines] == ["2/10", "10/10"]


@pytest.mark.parametrize("true_labels", [False, True])
def test_evaluate_gives_the_attack_its_batch_index_and_the_true_labels_when_it_asks(
        tmp_path, true_labels):
    from defense_gan import evaluation
    seen = []

    def attack(images, y=None, batch=None):
        seen.append((batch, None if y is None else y.numpy().tolist()))
        return images
    attack.true_labels = true_labels
    classifier = lambda images, training=False: tf.one_hot(  # noqa: E731
        tf.zeros(tf.shape(images)[0], tf.int32), 10)
    evaluation.evaluate(np.zeros([5, 28, 28, 1], np.float32), np.array([3, 1, 4, 1, 5]),
                        classifier=classifier, attack=attack, batch_size=2, seed=0,
                        records_dir=str(tmp_path), settings={"t": 1}, progress=lambda line: None)
    labels = [[3, 1], [4, 1], [5, 5]] if true_labels else [None] * 3  # the last batch padded
    assert seen == list(zip([0, 1, 2], labels))
