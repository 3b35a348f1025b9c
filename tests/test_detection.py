"""defense_gan.detection: ROC, AUC, threshold, bootstrap, against values computed by hand or
another way."""

import itertools

import numpy as np
import pytest

from defense_gan import detection


def mann_whitney_pairs(clean, attacked) -> float:
    """P(attacked > clean) + P(tie) / 2 over every pair: the AUC by its definition."""
    wins = [1.0 if a > c else 0.5 if a == c else 0.0
            for c, a in itertools.product(clean, attacked)]
    return float(np.mean(wins))


def test_roc_curve_matches_hand_computed_points():
    # clean 0.1, 0.4; attacked 0.35, 0.8. Thresholds descending: 0.8 -> (0, 1/2),
    # 0.4 -> (1/2, 1/2), 0.35 -> (1/2, 1), 0.1 -> (1, 1).
    fpr, tpr, thresholds = detection.roc_curve([0.1, 0.4], [0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds[1:], [0.8, 0.4, 0.35, 0.1])
    assert detection.auc([0.1, 0.4], [0.35, 0.8]) == pytest.approx(0.75)


def test_auc_equals_mann_whitney_with_ties():
    rng = np.random.default_rng(3)
    clean = rng.integers(0, 8, 37).astype(float)       # many ties, also across classes
    attacked = rng.integers(2, 10, 23).astype(float)
    expected = mann_whitney_pairs(clean, attacked)
    assert detection.auc(clean, attacked) == pytest.approx(expected, abs=1e-12)
    assert detection._auc_ranks(clean, attacked) == pytest.approx(expected, abs=1e-12)


def test_auc_is_one_for_separated_and_half_for_identical_scores():
    assert detection.auc([0.1, 0.2], [0.3, 0.9]) == 1.0
    assert detection.auc([0.3, 0.9], [0.1, 0.2]) == 0.0
    assert detection.auc([0.5, 0.5], [0.5]) == 0.5


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.1, 0.37])
def test_threshold_achieves_target_fpr_on_validation(fpr):
    validation = np.random.default_rng(0).exponential(size=1000)
    t = detection.threshold_for_fpr(validation, fpr)
    flagged, n = detection.detection_rate(validation, t)
    assert flagged == int(np.floor(fpr * n))   # distinct scores: exactly the allowed number


def test_threshold_never_exceeds_fpr_with_ties():
    validation = [1.0, 2.0, 2.0, 2.0, 3.0]  # 20% allowed: only the 3.0 may be flagged
    t = detection.threshold_for_fpr(validation, 0.2)
    assert t == 2.0 and detection.detection_rate(validation, t) == (1, 5)
    # 10% of 5 allows none: the largest score, nothing is above it.
    assert detection.detection_rate(validation, detection.threshold_for_fpr(validation, 0.1)) \
        == (0, 5)


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, 1.5])
def test_threshold_refuses_fpr_outside_open_unit_interval(fpr):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        detection.threshold_for_fpr([0.1, 0.2], fpr)


def test_threshold_refuses_empty_validation():
    with pytest.raises(ValueError, match="no scores"):
        detection.threshold_for_fpr([], 0.05)


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    clean, attacked = rng.normal(0, 1, 200), rng.normal(1, 1, 150)
    low, high = detection.auc_bootstrap(clean, attacked, samples=300, seed=7)
    assert low < detection.auc(clean, attacked) < high
    assert high - low < 0.2
    assert detection.auc_bootstrap(clean, attacked, samples=300, seed=7) == (low, high)
    assert detection.auc_bootstrap(clean, attacked, samples=300, seed=8) != (low, high)


def test_write_roc_png_writes_a_png(tmp_path):
    path = tmp_path / "roc.png"
    detection.write_roc_png(str(path), [
        {"label": "FGSM eps 0.3", "clean": [0.1, 0.2, 0.3], "attacked": [0.25, 0.4]},
        {"label": "CW", "clean": [0.1, 0.2, 0.3], "attacked": [0.15, 0.35]}],
        title="test", fpr_target=0.05)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
