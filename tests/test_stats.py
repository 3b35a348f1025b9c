"""The Wilson interval against values computed by hand and its edge cases."""

import pytest

from defense_gan import stats


def test_wilson_interval_matches_a_hand_computed_value():
    # 45 of 50: p = 0.9, z = 1.96 -> (0.7864, 0.9565) (e.g. Newcombe 1998, method 3).
    low, high = stats.wilson_interval(45, 50)
    assert low == pytest.approx(0.78641, abs=1e-4)
    assert high == pytest.approx(0.95653, abs=1e-4)


def test_wilson_interval_at_zero_successes_is_not_degenerate():
    low, high = stats.wilson_interval(0, 50)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.07135, abs=1e-4)


def test_wilson_interval_is_symmetric_under_swapping_successes_and_failures():
    low, high = stats.wilson_interval(7, 40)
    low2, high2 = stats.wilson_interval(33, 40)
    assert low == pytest.approx(1 - high2) and high == pytest.approx(1 - low2)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        stats.wilson_interval(6, 5)


def test_format_accuracy_shows_interval_and_sample_size():
    assert stats.format_accuracy(45, 50) == "0.900 [0.786, 0.957] (n=50)"


def test_format_metric_gives_value_wilson_interval_and_n_or_a_dot_without_a_value():
    low, high = stats.wilson_interval(3, 10)
    assert stats.format_metric({"num_images": 10, "acc": 0.3}, "acc") == \
        f"0.300 [{low:.3f}, {high:.3f}] n=10"
    assert stats.format_metric({"num_images": 10, "acc": None}, "acc") == "·"
    assert stats.format_metric({"num_images": 10}, "acc") == "·"
