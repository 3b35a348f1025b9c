"""MagNet (magnet.py, --mode=train_magnet, whitebox --defense=magnet): detector thresholds at
the requested false-positive rate, the rejection rule, the attacker's gradients, MagNet's
counting, and smoke runs of the two modes with their bad-input refusals."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import (SMOKE_CLASSIFIER_MODEL, SMOKE_FLAGFILE, error_line, run_main, run_main_here,
                      tree_digest)
from defense_gan import data, magnet, networks, results

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def model():
    """Randomly initialised MagNet auto-encoders (seed 0)."""
    return magnet.build(SHAPE, seed=0)


@pytest.fixture(scope="module")
def validation():
    return data.to_float(data.load("mnist").x_val[:2000]).numpy()


def test_the_auto_encoders_have_magnets_mnist_sizes_and_keep_the_image_shape(model):
    # 3x3 convolutions: I = 1->3, (pool) 3->3 | 3->3, (up) 3->3, 3->1; II = 1->3 | 3->3, 3->1.
    conv = lambda c_in, c_out: 9 * c_in * c_out + c_out  # noqa: E731
    assert model.ae_i.count_params() == conv(1, 3) + 3 * conv(3, 3) + conv(3, 1)
    assert model.ae_ii.count_params() == conv(1, 3) + conv(3, 3) + conv(3, 1)
    out_i, out_ii = model(tf.zeros((2, *SHAPE)))
    assert out_i.shape == out_ii.shape == (2, *SHAPE)


@pytest.mark.parametrize("fpr", [0.001, 0.01, 0.05])
def test_each_threshold_rejects_the_requested_fraction_of_validation_images(model, validation,
                                                                            fpr):
    marks = magnet.detector_marks(model, validation)
    thr = magnet.thresholds(marks, fpr)
    for name in ("I", "II"):
        assert np.sum(marks[name] >= thr[name]) == int(len(validation) * fpr)


def test_detector_marks_are_the_mean_squared_and_mean_absolute_reconstruction_errors(
        model, validation):
    x = validation[:5]
    marks = magnet.detector_marks(model, x)
    out_i, out_ii = (t.numpy() for t in model(x))
    np.testing.assert_allclose(marks["I"], ((x - out_i) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(marks["II"], np.abs(x - out_ii).mean(axis=(1, 2, 3)), rtol=1e-5)


def test_an_fpr_that_rejects_no_validation_image_is_refused_naming_the_flag(model, validation):
    with pytest.raises(magnet.ConfigError, match="^--magnet_fpr: "):
        magnet.thresholds(magnet.detector_marks(model, validation[:100]), 0.001)


def test_the_recorded_thresholds_ignore_last_bit_differences_between_cpus(
        smoke_magnet, validation):
    # The run settings are the resume fingerprint of its records: marks that differ in their
    # last bits (another CPU's kernels; here inputs scaled by 1 - 1e-6) keep the same settings.
    def settings(x):
        defended, _, s = magnet.build_defense(None, str(smoke_magnet / "export"), "mnist",
                                              SHAPE, x, 0.01)
        return defended.thresholds, s
    exact, recorded = settings(validation)
    exact_2, recorded_2 = settings(validation * np.float32(1 - 1e-6))
    assert exact != exact_2 and recorded == recorded_2
    for name in ("I", "II"):
        assert recorded["magnet_thresholds"][name] == pytest.approx(exact[name], rel=1e-3)


def test_the_score_reaches_one_exactly_when_a_detector_reaches_its_threshold(model, validation):
    marks = magnet.detector_marks(model, validation)
    thr = magnet.thresholds(marks, 0.05)
    classifier = networks.build(networks.Classifier("E"), SHAPE)
    defense = magnet.MagNetDefense(classifier, model, thr)
    score = defense.score(validation).numpy()
    expected = (marks["I"] >= thr["I"]) | (marks["II"] >= thr["II"])
    np.testing.assert_array_equal(score >= 1.0, expected)
    assert 0.05 <= expected.mean() <= 0.10  # each detector rejects 5%


def _grad(model_fn, x, y):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model_fn(x)))
    return tape.gradient(loss, x).numpy()


def test_the_attackers_gradients_full_bpda_and_classifier(model, validation):
    classifier = networks.build(networks.Classifier("E"), SHAPE)
    defense = magnet.MagNetDefense(classifier, model, {"I": 1.0, "II": 1.0})
    x, y = validation[:4], tf.constant([1, 2, 3, 4])
    full, bpda, plain = (_grad(defense.attack_model_fn(m), x, y)
                         for m in ("full", "bpda", "classifier"))
    reformed = defense.reform(x).numpy()
    # bpda: the classifier's gradient at the reformed image; classifier: at x itself. BPDA's
    # forward input x + (reform(x) - x) differs from reform(x) by float rounding, so the
    # tolerance is absolute at 1e-6 of gradients of order 1e-2.
    np.testing.assert_allclose(bpda, _grad(lambda t: classifier(t), reformed, y), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(plain, _grad(lambda t: classifier(t), x, y), rtol=1e-5,
                               atol=1e-8)
    # full goes through the auto-encoder's Jacobian: nonzero and unlike the identity's.
    assert np.abs(full).max() > 0 and not np.allclose(full, bpda, rtol=0.1)


def test_summarize_counts_rejected_adversarial_inputs_as_correct_and_rejected_clean_as_errors():
    def rec(pred_adv_def, rejected_adv, pred_clean_def, rejected_clean):
        return {"label": 1, "pred_clean": 1, "pred_adv": 0, "l2": 1.0, "linf": 0.3,
                "pred_adv_defended": pred_adv_def, "rejected_adv": rejected_adv,
                "pred_clean_defended": pred_clean_def, "rejected_clean": rejected_clean,
                "detector_score_clean": 0.5, "detector_score_adv": 2.0}
    records = [rec(0, True, 1, False),   # adversarial rejected: handled
               rec(1, False, 1, True),   # adversarial reformed correctly; clean rejected
               rec(0, False, 0, False),  # neither
               rec(1, True, 1, False)]   # both
    m = results.summarize(records, "magnet")
    assert m["adversarial_accuracy"] == 0.75
    assert m["reformed_adversarial_accuracy"] == 0.5
    assert m["rejected_adversarial_fraction"] == 0.5
    assert m["rejected_clean_fraction"] == 0.25
    assert m["defended_clean_accuracy"] == 0.5  # a rejected clean image is an error
    assert m["adversarial_accuracy_ci95"][0] < 0.75 < m["adversarial_accuracy_ci95"][1]


# --- the modes from the command line -----------------------------------------------------------

def magnet_whitebox(results_dir, magnet_dir, classifier_dir, *extra, runner=run_main):
    return runner(f"--flagfile={SMOKE_FLAGFILE}", "--mode=whitebox", "--defense=magnet",
                    f"--model={SMOKE_CLASSIFIER_MODEL}", f"--magnet_dir={magnet_dir}",
                    f"--classifier_dir={classifier_dir}", f"--results_dir={results_dir}",
                    "--magnet_fpr=0.01", *extra)


def test_train_magnet_exports_a_magnet_manifest_with_thresholds_at_the_fpr(smoke_magnet):
    manifest = json.loads((smoke_magnet / "export" / "manifest.json").read_text())
    assert (manifest["kind"], manifest["dataset"], manifest["fpr"]) == ("magnet", "mnist", 0.01)
    assert manifest["metrics"]["validation_rejected_fraction"] == {"I": 0.01, "II": 0.01}
    assert set(manifest["thresholds"]) == {"I", "II"} and manifest["steps"] == 8


def test_whitebox_magnet_records_rejection_and_reformed_prediction_per_example(
        smoke_magnet, smoke_classifier, tmp_path):
    rc, out, err = magnet_whitebox(tmp_path / "run", smoke_magnet, smoke_classifier.train_dir)
    assert rc == 0, f"{out}\n{err}"
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    records = [r for f in sorted((tmp_path / "run" / "records").glob("batch_*.json"))
               for r in json.loads(f.read_text())["records"]]
    assert len(records) == 8
    assert all({"rejected_adv", "rejected_clean", "pred_adv_defended",
                "detector_score_adv"} <= set(r) for r in records)
    handled = np.mean([r["rejected_adv"] or r["pred_adv_defended"] == r["label"]
                       for r in records])
    assert result["metrics"]["adversarial_accuracy"] == handled
    assert result["settings"]["gradient"] == "full" and "full" in result["gradient_mode"]
    assert result["metrics"]["mean_linf"] == pytest.approx(0.3, abs=1e-5)  # FGSM moved x


def test_a_magnet_checkpoint_of_another_dataset_is_refused_and_nothing_is_written(
        smoke_magnet, smoke_classifier, tmp_path):
    other = tmp_path / "magnet_other"
    other.mkdir()
    for f in (smoke_magnet / "export").iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "dataset": "fashion_mnist"}))
    before = tree_digest(tmp_path)
    rc, _, err = magnet_whitebox(tmp_path / "run", other, smoke_classifier.train_dir,
                                 runner=run_main_here)
    assert rc != 0
    assert error_line(err).startswith(f"error: --magnet_dir: '{other}' was trained on "
                                      "'fashion_mnist'")
    assert tree_digest(tmp_path) == before and not (tmp_path / "run").exists()


def test_rec_classifier_with_magnet_is_refused_naming_the_flag(tmp_path):
    rc, _, err = run_main_here(f"--flagfile={SMOKE_FLAGFILE}", "--mode=whitebox",
                               "--defense=magnet", "--rec_classifier", f"--results_dir={tmp_path / 'run'}")
    assert rc != 0 and error_line(err).startswith("error: --rec_classifier: needs "
                                                  "--defense=defense_gan")
    assert not (tmp_path / "run").exists()
