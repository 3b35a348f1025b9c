"""Confidence intervals for the accuracies every run reports.

An accuracy measured on n images is a binomial proportion: `wilson_interval` gives its 95%
Wilson score interval (Wilson 1927), which, unlike the normal approximation, stays inside
[0, 1] and is sensible at 0 or n successes, where many robust accuracies sit.
"""

import math

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (low, high) of successes / n; (0.0, 1.0) when n == 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_summary(correct: int, n: int) -> dict:
    """{"accuracy", "n", "ci95": [low, high]} for `correct` right answers out of `n`."""
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else None, "n": n, "ci95": [low, high]}


def format_accuracy(correct: int, n: int, digits: int = 3) -> str:
    """'0.512 [0.468, 0.556] (n=500)': an accuracy with its 95% Wilson interval."""
    if n == 0:
        return "-"
    low, high = wilson_interval(correct, n)
    return f"{correct / n:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] (n={n})"


def format_metric(metrics: dict, key: str, digits: int = 3) -> str:
    """'0.470 [0.439, 0.501] n=1000': the accuracy `key` of a run's metrics (results.json)
    with its 95% Wilson interval over metrics["num_images"], or '·' where it has none. The
    count is exact: accuracy * n."""
    value = metrics.get(key)
    if value is None:
        return "·"
    n = metrics["num_images"]
    low, high = wilson_interval(int(round(value * n)), n)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] n={n}"
