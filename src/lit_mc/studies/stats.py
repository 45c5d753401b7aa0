"""The statistics of a study: paired differences over folds, corrected for overlapping training sets, and Holm.

k-fold cross-validation gives k paired differences between two settings, but the folds share most of their
training images, so the differences are positively correlated and the plain paired t-test is over-confident.
Nadeau & Bengio (2003, "Inference for the Generalization Error", Machine Learning 52) correct the variance of the
mean difference from ``s^2 / J`` to ``(1 / J + n_test / n_train) s^2`` (J resamples; for k-fold CV
``n_test / n_train = 1 / (k - 1)``). Many comparisons at once are corrected with Holm's step-down procedure
(Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statistics 6), which controls the
family-wise error rate like Bonferroni and rejects at least as much. scipy supplies the t distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

ALPHA = 0.05
POWER = 0.8


def corrected_paired_t(
    differences: Sequence[float], test_over_train: float, confidence: float = 1 - ALPHA
) -> dict[str, float]:
    """Nadeau-Bengio corrected resampled t-test of the mean of ``differences`` (one per fold) against 0.

    Returns the mean, the corrected standard error, t, the degrees of freedom (J - 1), the two-sided p-value and
    the confidence interval of the mean difference. With fewer than two differences nothing can be tested (p and
    the interval are NaN); with zero spread the interval collapses and p is 0 (or 1 when the mean is 0 too).
    """
    n = len(differences)
    mean = sum(differences) / n if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "se": math.nan, "t": math.nan, "df": 0, "p": math.nan,
                "ci_low": math.nan, "ci_high": math.nan}  # fmt: skip
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1)
    se = math.sqrt((1 / n + test_over_train) * variance)
    df = n - 1
    if se == 0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p, half = (1.0 if mean == 0 else 0.0), 0.0
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return {"n": n, "mean": mean, "se": se, "t": t, "df": df, "p": p, "ci_low": mean - half, "ci_high": mean + half}


def equivalence_p(mean: float, se: float, df: int, margin: float) -> float:
    """Two one-sided tests (Schuirmann 1987) of ``|true difference| < margin``: the larger of the one-sided
    p-values of ``difference <= -margin`` and ``difference >= margin``; small when the difference is surely small."""
    if df < 1 or not math.isfinite(se):
        return math.nan
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = float(stats.t.sf((mean + margin) / se, df))
    upper = float(stats.t.sf((margin - mean) / se, df))
    return max(lower, upper)


def minimum_detectable_effect(se: float, df: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at ``alpha`` detects with probability ``power``, given the
    standard error ``se`` of the mean difference: ``(t_{1-alpha/2, df} + t_{power, df}) * se``."""
    if df < 1 or not math.isfinite(se):
        return math.nan
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (NaN stays NaN and does not count as a test).

    The i-th smallest of m p-values is multiplied by ``m - i + 1`` (i from 1), the running maximum is taken so the
    adjusted values keep the order of the raw ones, and each is capped at 1. A family rejected at level alpha is
    exactly the set with adjusted p below alpha."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0, confidence: float = 1 - ALPHA
) -> dict[str, float]:
    """Mean of the paired differences ``a - b`` (one per test item, e.g. per-image CIDEr of two captioners) with
    its percentile bootstrap interval (the items resampled with replacement, Efron & Tibshirani 1993; scipy's
    ``bootstrap``), and the two-sided bootstrap p-value: twice the share of resampled means on the other side of 0."""
    import numpy as np

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired bootstrap needs two equally long lists of at least 2 items ({len(a)}, {len(b)})")
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    result = stats.bootstrap((diffs,), np.mean, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", random_state=np.random.default_rng(seed))  # fmt: skip
    means = result.bootstrap_distribution
    mean = float(diffs.mean())
    other_side = (means <= 0).mean() if mean > 0 else (means >= 0).mean()
    return {"n": len(diffs), "mean": mean, "ci_low": float(result.confidence_interval.low),
            "ci_high": float(result.confidence_interval.high), "p": float(min(1.0, 2 * other_side)),
            "resamples": resamples}  # fmt: skip


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float]:
    """McNemar's exact test of two classifiers scored on the same test items (McNemar 1947; recommended for one
    run of each by Dietterich 1998, "Approximate Statistical Tests for Comparing Supervised Classification
    Learning Algorithms", Neural Computation 10): only the items exactly one of them gets right count, and if
    both are equally accurate each such item favours either with probability 1/2, so the count favouring ``a``
    is binomial(discordant, 1/2) (scipy's ``binomtest``, two-sided). It measures the test set's sampling error
    for these two trained models, not how much another seed would move them."""
    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError(f"McNemar's test needs two equally long, non-empty lists ({len(correct_a)}, {len(correct_b)})")
    only_a = sum(bool(a) and not b for a, b in zip(correct_a, correct_b, strict=True))
    only_b = sum(bool(b) and not a for a, b in zip(correct_a, correct_b, strict=True))
    discordant = only_a + only_b
    p = float(stats.binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    return {"n": len(correct_a), "only_a": only_a, "only_b": only_b, "difference": (only_a - only_b) / len(correct_a),
            "p": p}  # fmt: skip
