"""Detecting attacks by the reconstruction error (the paper's Figs 4-5), in plain numpy.

The statistic is the per-pixel MSE ||G(z*) - x||^2 / d of the projection (the `mse_clean` /
`mse_adv` of every record, see evaluation.py): an input whose score exceeds a threshold is
flagged as attacked. Positives are attacked images, negatives clean ones.

- `roc_curve(clean, attacked)`: false/true positive rates at every distinct threshold.
- `auc(clean, attacked)`: area under that curve, equal to the Mann-Whitney probability
  P(score_attacked > score_clean) + P(tie) / 2.
- `threshold_for_fpr(validation_clean, fpr)`: the threshold chosen on VALIDATION clean images
  (never the test images) so that at most a fraction `fpr` of them is flagged.
- `detection_rate(scores, threshold)`: the fraction flagged (score > threshold).
- `auc_bootstrap(clean, attacked, ...)`: a seeded percentile bootstrap 95% interval of the AUC,
  resampling the clean and attacked scores independently (each with its own size).
- `write_roc_png(path, curves, ...)`: every curve on one figure with axes and a legend.
"""

import numpy as np


def _scores(values, name: str) -> np.ndarray:
    scores = np.asarray(values, np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError(f"{name}: no scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name}: scores must be finite")
    return scores


def roc_curve(clean, attacked):
    """ROC of the detector `score > t` over every distinct threshold t.

    clean, attacked: scores float [n0], [n1] (n0, n1 >= 1; higher means more likely attacked).
    Returns (fpr, tpr, thresholds): float64 arrays of the same length m + 1 (m distinct scores),
    fpr and tpr non-decreasing from (0, 0) to (1, 1); point i >= 1 flags every score
    >= thresholds[i] (thresholds decreasing; thresholds[0] = +inf flags nothing).
    """
    clean, attacked = _scores(clean, "clean"), _scores(attacked, "attacked")
    scores = np.concatenate([clean, attacked])
    positive = np.concatenate([np.zeros(clean.size), np.ones(attacked.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    # The last index of each run of equal scores: ties move the curve diagonally.
    last = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tp = np.cumsum(positive)[last]
    fp = (last + 1) - tp
    fpr = np.r_[0.0, fp / clean.size]
    tpr = np.r_[0.0, tp / attacked.size]
    return fpr, tpr, np.r_[np.inf, scores[last]]


def auc(clean, attacked) -> float:
    """Area under the ROC curve (trapezoidal, so ties count one half), in [0, 1]."""
    fpr, tpr, _ = roc_curve(clean, attacked)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _auc_ranks(clean: np.ndarray, attacked: np.ndarray) -> float:
    """The same AUC by the rank-sum (Mann-Whitney U) formula; fast for the bootstrap."""
    scores = np.concatenate([clean, attacked])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # Average ranks (1-based) over ties.
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]
    ends = np.r_[starts[1:], scores.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    n0, n1 = clean.size, attacked.size
    u = ranks[n0:].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n0 * n1))


def auc_bootstrap(clean, attacked, *, samples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of the AUC at `level`: `samples` resamples
    with replacement of the clean and of the attacked scores, separately (stratified), from
    numpy's Generator seeded with `seed`, so the same inputs give the same interval."""
    clean, attacked = _scores(clean, "clean"), _scores(attacked, "attacked")
    if samples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need samples >= 1 and 0 < level < 1, got {samples}, {level}")
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for i in range(samples):
        values[i] = _auc_ranks(rng.choice(clean, clean.size), rng.choice(attacked, attacked.size))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def threshold_for_fpr(validation_clean, fpr: float) -> float:
    """The threshold t such that the detector `score > t` flags at most floor(fpr * n) of the
    n validation clean scores, and as many as it can (exactly floor(fpr * n) when scores are
    distinct): t is the (n - floor(fpr * n))-th smallest validation score.

    validation_clean: float [n] (n >= 1), never the test images. fpr: in (0, 1).
    """
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"the target false positive rate must be in (0, 1), got {fpr}")
    scores = np.sort(_scores(validation_clean, "validation_clean"))
    allowed = int(np.floor(fpr * scores.size))
    return float(scores[scores.size - allowed - 1])


def detection_rate(scores, threshold: float) -> tuple[int, int]:
    """(flagged, n): how many of `scores` exceed `threshold` (the detector flags score > t)."""
    scores = _scores(scores, "scores")
    return int(np.sum(scores > threshold)), int(scores.size)


def write_roc_png(path: str, curves: list, *, title: str, fpr_target: float | None = None
                  ) -> None:
    """One figure (PNG, written atomically) with every ROC curve of `curves` and a legend.

    curves: [{"label": str, "clean": scores, "attacked": scores}, ...]; the legend shows each
    curve's label, AUC and number of attacked images, as the paper's Figs 4-5. fpr_target:
    draws the chosen FPR as a dotted vertical line. Uses matplotlib's Agg backend (no display
    needed).
    """
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from defense_gan.files import write_bytes_atomic

    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=120)
    for curve in curves:
        fpr, tpr, _ = roc_curve(curve["clean"], curve["attacked"])
        value = auc(curve["clean"], curve["attacked"])
        ax.plot(fpr, tpr, lw=1.6,
                label=f"{curve['label']} (AUC = {value:.3f}, n = {len(curve['attacked'])})")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="chance (AUC = 0.5)")
    if fpr_target is not None:
        ax.axvline(fpr_target, color="0.3", lw=0.8, ls=":",
                   label=f"target FPR {fpr_target:g} (threshold on validation)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (clean test images flagged)")
    ax.set_ylabel("true positive rate (attacked images flagged)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, color="0.9")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
