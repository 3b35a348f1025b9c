"""Adaptive attacks (issue 16): BPDA + EOT, the unrolled gradient, PGD L-inf/L2 with
restarts, the latent-space attack, and the sanity checks of an honest evaluation (PGD without
the defense reaches ~0, accuracy falls with eps, an unbounded attack reaches 0, an outside
library agrees with our FGSM/PGD). Tiny models or the shipped classifier F on a few images."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, dense_generator, error_line, run_main, run_main_here, tree_digest
from defense_gan import attacks, classifiers, data, projection
from defense_gan.defense import DefendedClassifier
from defense_gan.evaluation import FRESH_SEED_OFFSET
from defense_gan.projection import ProjectionSettings, Projector

B, LATENT = 4, 8


@pytest.fixture(scope="module")
def shipped():
    """(classifier F, x [100, 28, 28, 1], labels [100]): the shipped classifier, first test
    images."""
    classifier, _ = classifiers.load_classifier(
        os.path.join(REPO, "checkpoints", "mnist", "classifier_F"), "mnist", "F")
    splits = data.load("mnist")
    return classifier, data.to_float(splits.x_test[:100]).numpy(), splits.y_test[:100]


def accuracy(classifier, x, y):
    return float(np.mean(np.argmax(classifier(x, training=False), 1) == y))


@pytest.fixture(scope="module")
def generator():
    return dense_generator(1, LATENT)


@pytest.fixture(scope="module")
def mlp():
    import keras
    from defense_gan import networks
    keras.utils.set_random_seed(0)
    return networks.build(networks.Classifier("E"), networks.MNIST_SHAPE)


def make_defended(generator, mlp, eot=None, iters=3, restarts=2):
    projector = Projector(generator, (28, 28, 1), LATENT,
                          ProjectionSettings(rec_iters=iters, rec_rr=restarts, rec_lr=0.05,
                                             batch_size=B))
    return DefendedClassifier(mlp, projector, seed=7, eot_samples=eot)


@pytest.fixture(scope="module")
def x():
    return tf.constant(np.random.default_rng(0).uniform(0.2, 0.8, (B, 28, 28, 1)), tf.float32)


# --- EOT -------------------------------------------------------------------------------------
def test_eot_seeds_are_fresh_per_call_and_never_the_defenders(generator, mlp):
    d = make_defended(generator, mlp, eot=3)
    seen = set()
    for k in range(3):
        d.set_attack_seed([7, k])
        for _ in range(4):
            seen |= {tuple(s) for s in d.eot_seeds(3).numpy()}
    assert len(seen) == 3 * 4 * 3  # every draw a new seed
    defender = {(7, k) for k in range(3)} | {(7, k + FRESH_SEED_OFFSET) for k in range(3)}
    assert not seen & defender and all(s[1] < 0 for s in seen)


def test_eot_seeds_restart_with_the_batch_so_a_resumed_run_draws_the_same(generator, mlp):
    d = make_defended(generator, mlp, eot=2)
    d.set_attack_seed([7, 5])
    first = d.eot_seeds(2).numpy()
    d.eot_seeds(2)
    d.set_attack_seed([7, 5])
    np.testing.assert_array_equal(d.eot_seeds(2).numpy(), first)


def test_eot_gradient_is_the_mean_of_the_draws_bpda_gradients(generator, mlp, x):
    d = make_defended(generator, mlp, eot=3)
    d.set_attack_seed([7, 0])
    y = tf.constant([1, 2, 3, 4], tf.int64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        draws = d.attack_model_fn("bpda")(x)
        loss = tf.reduce_sum(attacks.eot_loss(y, draws))
    got = tape.gradient(loss, x).numpy()
    assert draws.shape == (B, 3, 10)
    d.set_attack_seed([7, 0])
    seeds = d.eot_seeds(3)
    expected = 0
    for i in range(3):
        x_rec = d.projector(x, seeds[i])[0]
        with tf.GradientTape() as tape:
            tape.watch(x_rec)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, mlp(x_rec)))
        expected = expected + tape.gradient(loss, x_rec).numpy() / 3
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert np.abs(got).max() > 0


def test_pgd_and_cw_accept_eot_logits_and_move_the_input(generator, mlp, x):
    d = make_defended(generator, mlp, eot=2)
    d.set_attack_seed([7, 0])
    model_fn = d.attack_model_fn("bpda")
    x_pgd = attacks.pgd(model_fn, x, 0.1, 0.05, 2, seed=0)
    assert 0 < np.abs(x_pgd - x).max() <= 0.1 + 1e-6
    x_cw = attacks.CarliniWagnerL2(model_fn, max_iterations=3)(x)
    assert x_cw.shape == x.shape


# --- unrolled gradient ----------------------------------------------------------------------
def test_unrolled_gradient_is_finite_nonzero_and_matches_finite_differences(generator, mlp, x):
    """The release's vanished gradient (its issues #1, #14) does not come back: through L=4
    steps of a small generator the exact gradient is finite, non-zero and equals a central
    finite difference of the defended loss along a random direction."""
    d = make_defended(generator, mlp, iters=4, restarts=1)
    model_fn = d.attack_model_fn("unrolled")
    y = tf.constant([1, 2, 3, 4], tf.int64)

    def loss(t):
        return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model_fn(t)))
    x64 = tf.cast(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x64)
        value = loss(x64)
    grad = tape.gradient(value, x64).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    direction = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    direction /= np.linalg.norm(direction)
    h = 1e-2
    numeric = (loss(x64 + h * direction) - loss(x64 - h * direction)).numpy() / (2 * h)
    np.testing.assert_allclose((grad * direction).sum(), numeric, rtol=0.05, atol=1e-4)


def test_unrolled_memory_estimate_is_linear_and_the_largest_l_fits(generator):
    one = projection.unrolled_memory_bytes(generator, (28, 28, 1), 50, 10, 1)
    assert projection.unrolled_memory_bytes(generator, (28, 28, 1), 50, 10, 200) == 200 * one
    fits = projection.largest_unrolled_steps(generator, (28, 28, 1), 50, 10, 16.0)
    assert fits * one <= 16 * 2 ** 30 < (fits + 1) * one


# --- PGD -------------------------------------------------------------------------------------
def test_pgd_l2_stays_in_the_l2_ball_and_moves_the_input(mlp, x):
    x_adv = attacks.pgd(lambda t: mlp(t), x, 1.5, 0.5, 5, seed=0, norm="l2")
    norms = np.linalg.norm((x_adv - x).numpy().reshape(B, -1), axis=1)
    assert np.all(norms <= 1.5 + 1e-4) and np.all(norms > 0.1)


def test_pgd_restarts_keep_per_image_the_restart_with_the_highest_loss(mlp, x):
    y = tf.constant([1, 2, 3, 4], tf.int64)
    model_fn = lambda t: mlp(t)  # noqa: E731
    best = attacks.pgd(model_fn, x, 0.05, 0.01, 2, seed=(0, 0), y=y, restarts=3)
    singles = [attacks.pgd(model_fn, x, 0.05, 0.01, 2, seed=(0, r * (1 << 16)), y=y)
               for r in range(3)]
    losses = np.stack([attacks.eot_loss(y, mlp(s)).numpy() for s in singles])
    np.testing.assert_allclose(attacks.eot_loss(y, mlp(best)).numpy(), losses.max(0),
                               rtol=1e-5)


# --- sanity checks on the shipped classifier (no defense) ------------------------------------
def test_pgd_without_the_defense_reaches_about_zero_and_accuracy_falls_with_eps(shipped):
    classifier, x, y = shipped
    x, y = x[:50], y[:50]
    model_fn = lambda t: classifier(t, training=False)  # noqa: E731
    accs = [accuracy(classifier, x, y)]
    for eps in (0.05, 0.1, 0.2, 0.3):
        accs.append(accuracy(classifier, attacks.pgd(model_fn, x, eps, eps / 4, 10, seed=0,
                                                     y=y).numpy(), y))
    assert accs[0] >= 0.95
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] <= 0.04, accs


def test_an_unbounded_attack_reaches_zero(shipped):
    classifier, x, y = shipped
    x, y = x[:50], y[:50]
    x_adv = attacks.pgd(lambda t: classifier(t, training=False), x, 1.0, 0.1, 20, seed=0, y=y)
    assert accuracy(classifier, x_adv.numpy(), y) == 0.0


def test_art_agrees_with_our_fgsm_and_pgd_within_two_points(shipped):
    """adversarial-robustness-toolbox (pinned in requirements-test.txt) on the same classifier,
    images and labels: FGSM eps 0.3 and PGD eps 0.3 (10 steps of 0.075, random start)."""
    art_attacks = pytest.importorskip("art.attacks.evasion")
    from art.estimators.classification import TensorFlowV2Classifier
    import keras
    classifier, x, y = shipped
    art_model = TensorFlowV2Classifier(
        model=classifier, nb_classes=10, input_shape=(28, 28, 1),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))
    onehot = np.eye(10, dtype=np.float32)[y]
    model_fn = lambda t: classifier(t, training=False)  # noqa: E731
    ours = accuracy(classifier, attacks.fgsm(model_fn, x, 0.3, y=y).numpy(), y)
    theirs = accuracy(classifier, art_attacks.FastGradientMethod(
        art_model, eps=0.3).generate(x, onehot), y)
    assert abs(ours - theirs) <= 0.02, (ours, theirs)
    ours = accuracy(classifier, attacks.pgd(model_fn, x, 0.3, 0.075, 10, seed=0, y=y).numpy(), y)
    theirs = accuracy(classifier, art_attacks.ProjectedGradientDescent(
        art_model, eps=0.3, eps_step=0.075, max_iter=10, num_random_init=1,
        verbose=False).generate(x, onehot), y)
    assert abs(ours - theirs) <= 0.02, (ours, theirs)
    assert ours < 0.5  # the attack did something


# --- latent-space attack ---------------------------------------------------------------------
def test_latent_attack_returns_misclassified_generator_images_or_the_input(generator, mlp):
    z_true = tf.random.stateless_normal([B, LATENT], seed=[1, 2])
    x = generator(z_true)
    y = tf.argmax(mlp(x), 1)
    search = attacks.LatentAttack(generator, mlp, iters=100, lr=0.5, c=100.0)
    x_adv = search(x, z_true, y).numpy()
    found = np.linalg.norm((x_adv - x.numpy()).reshape(B, -1), axis=1) > 0
    assert found.any()
    pred = np.argmax(mlp(x_adv), 1)
    assert np.all(pred[found] != y.numpy()[found])
    np.testing.assert_array_equal(x_adv[~found], x.numpy()[~found])


# --- the command line ------------------------------------------------------------------------
TINY = ("--mode=whitebox", "--model=F", "--num_tests=4", "--eval_batch_size=4",
        "--rec_iters=2", "--rec_rr=2", "--pgd_steps=2")


@pytest.mark.parametrize("flag, message", [
    ("--eot_samples=0", "--eot_samples: must be >= 1"),
    ("--sweep_eps=0.1,1.5", "--sweep_eps: every eps must be in [0, 1]"),
    ("--rec_iters=100000", "--rec_iters: --gradient=unrolled through L=100000"),
    ("--defense=none --attack=latent", "--attack: needs --defense=defense_gan"),
])
def test_bad_adaptive_input_is_one_line_naming_the_flag_and_writes_nothing(tmp_path, flag,
                                                                           message):
    extra = ("--gradient=unrolled",) if "rec_iters" in flag else ("--gradient=bpda",)
    before = tree_digest(tmp_path)
    rc, out, err = run_main_here(*TINY, "--attack=pgd", "--defense=defense_gan", *extra,
                                 *flag.split(), f"--results_dir={tmp_path / 'run'}")
    assert rc != 0 and message in error_line(err)
    assert tree_digest(tmp_path) == before and not (tmp_path / "run").exists()


def test_eot_run_with_cheaper_attack_projections_records_what_the_attacker_knew(tmp_path):
    rc, out, err = run_main(*TINY, "--attack=pgd", "--defense=defense_gan", "--gradient=bpda",
                            "--eot_samples=2", "--attack_rec_iters=1", "--attack_rec_rr=1",
                            f"--results_dir={tmp_path}")
    assert rc == 0, err
    result = json.loads((tmp_path / "results.json").read_text())
    knows = result["attacker_knowledge"]
    assert knows["attack_projection"]["rec_iters"] == 1
    assert knows["evaluated_projection"]["rec_iters"] == 2
    assert "never used" in knows["projection_seeds"]
    assert result["metrics"]["adversarial_accuracy_fresh_seed_ci95"] is not None


def test_latent_attack_from_the_command_line_reports_success_and_distance_of_changed_images(
        tmp_path):
    rc, out, err = run_main(*TINY, "--attack=latent", "--defense=defense_gan",
                            "--gradient=bpda", "--latent_iters=3", f"--results_dir={tmp_path}")
    assert rc == 0, err
    result = json.loads((tmp_path / "results.json").read_text())
    m = result["metrics"]
    assert 0.0 <= m["changed_fraction"] <= 1.0 and m["num_images"] == 4
    records = [r for f in sorted((tmp_path / "records").glob("batch_*.json"))
               for r in json.loads(f.read_text())["records"]]
    changed = [r["l2"] ** 2 for r in records if r["l2"] > 0]
    assert m["changed_fraction"] == len(changed) / 4
    if changed:
        assert m["mean_l2_sq_changed"] == pytest.approx(np.mean(changed))


def test_unrolled_gradient_run_from_the_command_line_moves_the_images(tmp_path):
    rc, out, err = run_main(*TINY, "--attack=fgsm", "--defense=defense_gan",
                            "--gradient=unrolled", f"--results_dir={tmp_path}")
    assert rc == 0, err
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["settings"]["gradient"] == "unrolled"
    assert result["metrics"]["mean_linf"] == pytest.approx(0.3, abs=1e-5)


def test_sweep_writes_accuracy_per_eps_as_json_and_png(tmp_path):
    rc, out, err = run_main(*TINY, "--attack=fgsm", "--defense=none", "--sweep_eps=0.3,0",
                            f"--results_dir={tmp_path}")
    assert rc == 0, err
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["eps"] for p in sweep["points"]] == [0.0, 0.3]
    assert sweep["points"][0]["adversarial_accuracy"] >= sweep["points"][1]["adversarial_accuracy"]
    assert sweep["points"][0]["mean_linf"] == 0.0 and sweep["points"][1]["mean_linf"] > 0.29
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_curve_labels_of_adversarially_trained_models_name_their_training_eps():
    from defense_gan.plots import curve_label
    labels = {curve_label({"defense": "adv_tr", "adv_train_eps": e}) for e in (0.15, 0.3)}
    assert labels == {"adversarial training (eps 0.15)", "adversarial training (eps 0.3)"}


def test_an_l2_and_an_linf_sweep_of_the_same_attack_go_to_different_folders():
    from defense_gan.config import Config
    from defense_gan.modes import whitebox
    linf = Config(model="A", defense="none", attack="pgd", sweep_eps="0.1,0.3", num_tests=500)
    l2 = Config(model="A", defense="none", attack="pgd", pgd_norm="l2", sweep_eps="0.5,3",
                num_tests=500)
    assert whitebox.run_name(linf) == "A_none_pgd_sweep_n500"
    assert whitebox.run_name(l2) == "A_none_pgd_l2sweep_n500"


def test_an_l2_sweep_takes_budgets_above_one_and_an_linf_sweep_does_not():
    from defense_gan.config import parse_sweep_eps
    from defense_gan.errors import ConfigError
    assert parse_sweep_eps("0.5,1.98,3", l2=True) == [0.5, 1.98, 3.0]
    with pytest.raises(ConfigError, match="--sweep_eps"):
        parse_sweep_eps("0.5,1.98,3")
    with pytest.raises(ConfigError, match="L2 budget must be >= 0"):
        parse_sweep_eps("-1", l2=True)


@pytest.mark.parametrize("attack, flag, labels, suffix", [
    ("pgd", "auto", "true", ""), ("latent", "auto", "true", ""),
    ("fgsm", "auto", "predicted", ""), ("cw", "auto", "predicted", ""),
    ("pgd", "predicted", "predicted", "_ypred"), ("fgsm", "true", "true", "_ytrue"),
    ("pgd", "true", "true", "")])
def test_adaptive_attacks_use_true_labels_and_the_papers_attacks_the_models_prediction(
        attack, flag, labels, suffix):
    """--attack_labels=auto: PGD and the latent attack move away from the true label; FGSM,
    RAND+FGSM and CW keep the release's default. A non-default choice names its folder."""
    from defense_gan.config import Config
    from defense_gan.modes import whitebox
    cfg = Config(model="F", attack=attack, attack_labels=flag)
    assert whitebox.attack_labels(cfg) == labels
    default = whitebox.run_name(Config(model="F", attack=attack))
    assert whitebox.run_name(cfg) == default.replace("_n1000", f"{suffix}_n1000")


def test_a_pgd_run_records_that_it_attacked_the_true_labels(tmp_path):
    rc, out, err = run_main(*TINY, "--attack=pgd", "--defense=none", f"--results_dir={tmp_path}")
    assert rc == 0, err
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["settings"]["attack_settings"]["labels"] == "true labels"


def test_the_latent_attack_works_in_a_data_sets_own_pixel_range():
    """CelebA's pixels are in [-1, 1]: the search accepts them and returns images there."""
    import keras

    z_in = keras.Input((LATENT,))
    tanh_generator = keras.Model(z_in, keras.layers.Reshape((28, 28, 1))(
        keras.layers.Dense(784, activation="tanh")(z_in)))
    mlp = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(10)])
    x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (B, 28, 28, 1)), tf.float32)
    search = attacks.LatentAttack(tanh_generator, mlp, iters=5, clip_min=-1.0, clip_max=1.0)
    out = search(x, tf.zeros([B, LATENT]), tf.zeros([B], tf.int32)).numpy()
    assert out.min() >= -1.0 and out.max() <= 1.0 and out.min() < 0.0


def test_the_unrolled_gradient_gets_an_unpruned_projector_when_the_defender_prunes(tmp_path):
    """Projector.unrolled replays every restart for L steps; a pruning forward pass would
    differ from what it differentiates."""
    from defense_gan.config import Config
    from defense_gan.modes import whitebox
    classifier, _ = classifiers.load_classifier(
        os.path.join(REPO, "checkpoints", "mnist", "classifier_F"), "mnist", "F")
    splits = data.load("mnist")
    for gradient, attack_prunes in (("bpda", 0.25), ("unrolled", 0.0)):
        cfg = Config(model="F", defense="defense_gan", gradient=gradient, attack="pgd",
                     rec_iters=4, rec_rr=2, rec_prune_at=0.25, rec_keep=1, eval_batch_size=2)
        built = whitebox._defense_gan(cfg, classifier, splits, str(tmp_path / gradient))
        assert built.defended.projector.settings.rec_prune_at == 0.25
        assert built.defended.attack_projector.settings.rec_prune_at == attack_prunes, gradient
