"""The drift tests: null calibration, power, and agreement with scipy / hand-computed values."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as sps

from advanced_rag.drift.stats import (
    TestResult,
    _auc_columns,
    _out_of_fold_operator,
    anderson_darling_test,
    benjamini_hochberg,
    chi_square_test,
    classifier_test,
    holm,
    ks_test,
    mmd_test,
    pca_ks_test,
    pooled_pca,
    psi,
)
from advanced_rag.errors import InputError
from advanced_rag.scoring import calibration as cal

REPEATS = 200


def null_p_values(run: Callable[[np.random.Generator], TestResult], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([run(rng).p_value for _ in range(REPEATS)])


def assert_valid_result(result: TestResult) -> None:
    assert 0.0 < result.p_value <= 1.0 and not math.isnan(result.p_value)
    assert 0.0 <= result.effect_size <= 1.0
    assert math.isfinite(result.statistic)


def assert_calibrated(p: np.ndarray, *, uniform: bool) -> None:
    """Valid: P(p <= t) is not above t (plus sampling slack). Exact tests: also ~U(0, 1).

    With 200 repetitions a valid test exceeds 10 % rejections at 0.05 with probability ~5e-4;
    the KS check against U(0, 1) uses 0.001 because permutation p-values are discrete (ties
    make them slightly conservative). Calibration was also checked at 600 repetitions."""
    assert (p <= 0.05).mean() <= 0.10
    for t in (0.1, 0.25, 0.5):
        assert (p <= t).mean() <= t + 0.1
    if uniform:
        assert sps.kstest(p, "uniform").pvalue > 0.001


# ---------------------------------------------------------------------------------------------
# No drift: p-values calibrated over repetitions
# ---------------------------------------------------------------------------------------------

def test_mmd_null_p_values_are_uniform() -> None:
    def run(rng: np.random.Generator) -> TestResult:
        return mmd_test(rng.normal(size=(30, 6)), rng.normal(size=(40, 6)), permutations=199, rng=rng)
    assert_calibrated(null_p_values(run, 1), uniform=True)


def test_mmd_with_pca_null_p_values_are_uniform() -> None:
    def run(rng: np.random.Generator) -> TestResult:
        return mmd_test(rng.normal(size=(25, 40)), rng.normal(size=(30, 40)), permutations=99, rng=rng,
                        components=5)
    assert_calibrated(null_p_values(run, 2), uniform=True)


def test_classifier_null_p_values_are_uniform() -> None:
    def run(rng: np.random.Generator) -> TestResult:
        return classifier_test(rng.normal(size=(40, 12)), rng.normal(size=(40, 12)), permutations=199,
                               rng=rng, components=5)
    assert_calibrated(null_p_values(run, 3), uniform=True)


def test_pca_ks_null_is_valid_both_corrections() -> None:
    # Bonferroni / BH over dimensions are conservative: valid, not uniform.
    for correction, seed in (("bonferroni", 4), ("bh", 5)):
        def run(rng: np.random.Generator, correction: str = correction) -> TestResult:
            return pca_ks_test(rng.normal(size=(40, 20)), rng.normal(size=(40, 20)), components=5,
                               correction=correction)
        assert_calibrated(null_p_values(run, seed), uniform=False)


def test_reference_fit_pca_inflates_false_alarms_pooled_fit_does_not() -> None:
    # Why pca_ks_test defaults to fit="pooled": 40 rows in 100 dimensions overfit the PCA, and the
    # reference's spread along its own top axes is inflated. The calibration check must catch it.
    def run(fit: str) -> Callable[[np.random.Generator], TestResult]:
        return lambda rng: pca_ks_test(rng.normal(size=(40, 100)), rng.normal(size=(40, 100)),
                                       components=5, fit=fit)
    inflated = null_p_values(run("reference"), 9)
    assert (inflated <= 0.05).mean() > 0.15
    with pytest.raises(AssertionError):
        assert_calibrated(inflated, uniform=False)
    assert_calibrated(null_p_values(run("pooled"), 9), uniform=False)


def test_score_tests_null_p_values_are_uniform() -> None:
    def ks(rng: np.random.Generator) -> TestResult:
        return ks_test(rng.normal(size=50), rng.normal(size=60))

    def ad(rng: np.random.Generator) -> TestResult:
        return anderson_darling_test(rng.normal(size=50), rng.normal(size=60), permutations=199, rng=rng)
    assert_calibrated(null_p_values(ks, 6), uniform=True)
    ad_p = null_p_values(ad, 7)
    assert_calibrated(ad_p, uniform=True)
    assert (ad_p > 0.25).any()  # not scipy's tabulated p-value, which is capped at 0.25


def test_chi_square_null_is_valid() -> None:
    shares = [0.5, 0.3, 0.2]

    def run(rng: np.random.Generator) -> TestResult:
        return chi_square_test(list(rng.choice(["a", "b", "c"], 80, p=shares)),
                               list(rng.choice(["a", "b", "c"], 60, p=shares)))
    assert_calibrated(null_p_values(run, 8), uniform=False)


# ---------------------------------------------------------------------------------------------
# Drift: small p-values
# ---------------------------------------------------------------------------------------------

def test_shifted_embeddings_give_small_p_and_positive_effect() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(size=(60, 16))
    y = rng.normal(size=(60, 16))
    y[:, 3] += 2.0
    for result in (mmd_test(x, y, permutations=199, rng=rng, components=10),
                   pca_ks_test(x, y, components=10),
                   pca_ks_test(x, y, components=10, fit="reference"),
                   classifier_test(x, y, permutations=199, rng=rng)):
        assert_valid_result(result)
        assert result.p_value <= 0.01, result
        assert result.effect_size > 0.1
    assert mmd_test(x, y, permutations=199, rng=rng).p_value == pytest.approx(1 / 200)


def test_shifted_scores_give_small_p() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=80), rng.normal(0.8, 1.0, size=80)
    ks, ad = ks_test(a, b), anderson_darling_test(a, b, permutations=299, rng=rng)
    assert ks.p_value < 1e-3 and ad.p_value <= 2 / 300
    delta = ks.detail["cliffs_delta"]
    assert isinstance(delta, float) and delta > 0.3  # current scores went up
    assert ad.effect_size == pytest.approx(ks.statistic)


# ---------------------------------------------------------------------------------------------
# Agreement with scipy and with hand-computed values
# ---------------------------------------------------------------------------------------------

def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=40), rng.normal(0.3, 1.0, size=55)
    expected = sps.ks_2samp(a, b)
    result = ks_test(a, b)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert (result.n_reference, result.n_current) == (40, 55)


def test_chi_square_matches_scipy_and_cramers_v() -> None:
    ref = ["a"] * 40 + ["b"] * 35 + ["c"] * 25
    cur = ["a"] * 20 + ["b"] * 30 + ["c"] * 30
    table = np.array([[40, 35, 25], [20, 30, 30]])
    chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
    result = chi_square_test(ref, cur)
    assert result.statistic == pytest.approx(chi2) and result.p_value == pytest.approx(p)
    assert result.effect_size == pytest.approx(math.sqrt(chi2 / 180))
    assert result.detail["categories"] == ("a", "b", "c")
    assert result.detail["current_shares"] == pytest.approx((0.25, 0.375, 0.375))


def test_chi_square_pools_sparse_categories() -> None:
    ref = ["a"] * 50 + ["b"] * 45 + ["x"] * 2 + ["y"] * 3
    cur = ["a"] * 30 + ["b"] * 40 + ["x"] * 1 + ["z"] * 4
    result = chi_square_test(ref, cur)
    categories = result.detail["categories"]
    assert isinstance(categories, tuple) and categories[-1] == "(other)"
    assert set(categories) == {"a", "b", "(other)"}
    pooled = np.array([[50, 45, 5], [30, 40, 5]])
    assert result.statistic == pytest.approx(sps.chi2_contingency(pooled, correction=False)[0])
    # a pooled column with an expected count below 1 absorbs the smallest remaining category
    tiny = chi_square_test(["a"] * 60 + ["b"] * 30 + ["c"] * 10 + ["x"], ["a"] * 50 + ["b"] * 40 + ["c"] * 10)
    assert tiny.detail["categories"] == ("a", "b", "(other)")
    single = chi_square_test(["a"] * 10, ["a"] * 10)
    assert (single.p_value, single.statistic) == (1.0, 0.0)


def test_holm_hand_example() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])
    assert len(holm([])) == 0


def test_benjamini_hochberg_hand_example() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4/1, x4/2, x4/3, x4/4 = 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # monotone: 0.02·3/1 = 0.06 is lowered to the next one, 0.021·3/2 = 0.0315
    assert benjamini_hochberg([0.02, 0.021, 0.5]) == pytest.approx([0.0315, 0.0315, 0.5 * 3 / 3])
    with pytest.raises(InputError):
        holm([0.1, float("nan")])


def test_psi_known_values() -> None:
    reference = (np.arange(1000) + 0.5) / 1000  # 100 rows in each reference decile
    assert psi(reference, reference) == pytest.approx(0.0)
    counts = [20, 10, 10, 10, 10, 10, 10, 10, 5, 5]
    current = np.repeat(np.arange(10) / 10 + 0.05, counts)  # bin centres
    shares = np.array(counts) / 100
    expected = float(((shares - 0.1) * np.log(shares / 0.1)).sum())
    assert psi(reference, current) == pytest.approx(expected)
    # everything in the first bin: the nine empty bins are floored at 1e-4
    floored = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi(reference, np.full(50, 0.01)) == pytest.approx(floored)


def test_mmd_statistic_matches_brute_force_unbiased_estimate() -> None:
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.0, size=(9, 3))
    result = mmd_test(x, y, permutations=50, rng=rng, bandwidth_scales=(1.0,))
    pooled = np.vstack([x, y])
    d2 = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    sigma2 = np.median(d2[np.triu_indices(16, 1)])

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-((a - b) ** 2).sum() / (2 * sigma2)))
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(a, b) for a in x for b in y) / (7 * 9)
    assert result.statistic == pytest.approx(xx + yy - 2 * xy)
    assert result.detail["bandwidth"] == pytest.approx(math.sqrt(sigma2))


def test_mmd_aggregated_p_is_a_permutation_p_value() -> None:
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(25, 4))
    result = mmd_test(x, y, permutations=99, rng=np.random.default_rng(0))
    assert result.p_value * 100 == pytest.approx(round(result.p_value * 100))  # a multiple of 1/(B+1)
    per_scale = result.detail["p_per_scale"]
    assert isinstance(per_scale, tuple) and len(per_scale) == 3
    # the min-p is calibrated, never smaller than its parts
    assert result.p_value >= min(float(v) for v in per_scale)


def test_classifier_operator_is_the_ridge_refit_and_auc_matches_calibration() -> None:
    rng = np.random.default_rng(15)
    z = rng.normal(size=(30, 4))
    y = (rng.random(30) < 0.5).astype(float)
    fold = np.arange(30) % 3
    operator = _out_of_fold_operator(z, fold, 3, l2=2.0)
    test, train = fold == 0, fold != 0
    design = np.hstack([z[train], np.ones((train.sum(), 1))])
    penalty = np.diag([2.0] * 4 + [0.0])  # intercept unpenalised
    coef = np.linalg.solve(design.T @ design + penalty, design.T @ y[train])
    expected = np.hstack([z[test], np.ones((test.sum(), 1))]) @ coef
    assert (operator @ y)[test] == pytest.approx(expected)
    scores = np.round(rng.normal(size=30), 1)  # with ties
    assert _auc_columns(y[:, None], scores[:, None])[0] == pytest.approx(cal.auroc(y, scores))


def test_pooled_pca_ignores_which_window_a_row_came_from() -> None:
    rng = np.random.default_rng(16)
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(15, 8))
    a, b = pooled_pca(x, y, 3)
    b2, a2 = pooled_pca(y, x, 3)
    assert np.abs(a) == pytest.approx(np.abs(a2)) and np.abs(b) == pytest.approx(np.abs(b2))
    wa, wb = pooled_pca(x, y, 3, whiten=True)
    assert np.vstack([wa, wb]).std(axis=0, ddof=1) == pytest.approx(np.ones(3))


def test_degenerate_inputs() -> None:
    rng = np.random.default_rng(17)
    constant = anderson_darling_test(np.ones(20), np.ones(30), permutations=50, rng=rng)
    assert (constant.p_value, constant.effect_size) == (1.0, 0.0)
    same = mmd_test(np.zeros((10, 3)), np.zeros((12, 3)), permutations=50, rng=rng)
    assert_valid_result(same)
    with pytest.raises(InputError):
        mmd_test(np.zeros((10, 3)), np.zeros((10, 4)), permutations=50, rng=rng)
    with pytest.raises(InputError):
        ks_test([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(InputError):
        pca_ks_test(np.zeros((10, 3)), np.zeros((10, 3)), components=2, correction="holm")
    with pytest.raises(InputError):
        classifier_test(np.zeros((3, 3)), np.zeros((10, 3)), permutations=10, rng=rng)
