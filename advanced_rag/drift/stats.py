"""Two-sample drift tests (numpy/scipy only); each returns a :class:`TestResult`.

Every test asks one question: were the *reference* and the *current* sample drawn from the same
distribution? The p-value is the probability, under that null hypothesis, of a statistic at least
as extreme as the one observed; the effect size says how large the difference is, on a [0, 1]
scale documented per test (0: no difference).

* :func:`mmd_test` — kernel maximum mean discrepancy on (PCA-reduced) embeddings, permutation
  p-value.
* :func:`pca_ks_test` — PCA + per-dimension Kolmogorov–Smirnov, combined by Bonferroni or
  Benjamini–Hochberg ("Failing Loudly", Rabanser et al. 2019).
* :func:`classifier_test` — a domain classifier's cross-validated AUC, permutation p-value.
* :func:`ks_test`, :func:`anderson_darling_test` — 1-D score samples.
* :func:`chi_square_test` — categorical shares (tenant, search type), effect = Cramér's V.
* :func:`psi` — population stability index, for display only (not a test).
* :func:`holm`, :func:`benjamini_hochberg` — adjusted p-values for many tests.

Permutation p-values are ``(1 + #{permuted statistic >= observed}) / (1 + B)``: never 0, and never
below ``1 / (B + 1)``, so ``B`` bounds the smallest p-value a test can report.

Example::

    rng = np.random.default_rng(0)
    result = mmd_test(reference_vectors, current_vectors, permutations=500, rng=rng)
    result.p_value, result.effect_size
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..errors import InputError

__all__ = [
    "P_FLOOR", "DetailValue", "TestResult", "anderson_darling_test", "benjamini_hochberg",
    "chi_square_test", "classifier_test", "holm", "ks_test", "mmd_test", "pca_ks_test", "pooled_pca",
    "psi",
]

#: Smallest p-value a test reports (an exact 0 from an asymptotic formula becomes this).
P_FLOOR = 1e-300
#: Categories with an expected count below this are pooled before a chi-square test (Cochran).
MIN_EXPECTED = 5.0
#: Shares below this are floored in :func:`psi` so an empty bin contributes a finite amount.
PSI_FLOOR = 1e-4

DetailValue = float | int | str | tuple[float, ...] | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TestResult:
    """One two-sample test.

    ``statistic`` is the test's own statistic (named in each function's docstring);
    ``p_value`` is in (0, 1] and never NaN; ``effect_size`` is in [0, 1] (0: no difference);
    ``detail`` holds JSON-friendly extras (per-dimension p-values, bandwidth, shares...)."""

    __test__ = False  # not a pytest test class

    name: str
    family: str
    statistic: float
    p_value: float
    effect_size: float
    n_reference: int
    n_current: int
    detail: Mapping[str, DetailValue]


def _p(value: float) -> float:
    """A p-value clipped to [P_FLOOR, 1]; NaN (a degenerate sample) counts as no evidence."""
    v = float(value)
    return 1.0 if not np.isfinite(v) else float(min(1.0, max(P_FLOOR, v)))


def _unit(value: float) -> float:
    v = float(value)
    return 0.0 if not np.isfinite(v) else float(min(1.0, max(0.0, v)))


def _matrix(x: np.ndarray, what: str, minimum: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise InputError(f"{what}: expected a 2-D array (rows, dimensions), got shape {a.shape}")
    if a.shape[0] < minimum:
        raise InputError(f"{what}: needs at least {minimum} rows, got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise InputError(f"{what}: contains NaN or infinite values")
    return a


def _vector(x: np.ndarray | Sequence[float], what: str, minimum: int = 1) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"{what}: expected a 1-D array, got shape {a.shape}")
    if a.shape[0] < minimum:
        raise InputError(f"{what}: needs at least {minimum} values, got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise InputError(f"{what}: contains NaN or infinite values")
    return a


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(x, "reference"), _matrix(y, "current")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"reference has {a.shape[1]} dimensions, current has {b.shape[1]}")
    return a, b


def _check_permutations(permutations: int) -> None:
    if permutations < 1:
        raise InputError(f"permutations must be >= 1, got {permutations}")


def _permutation_p(observed: float, permuted: np.ndarray) -> float:
    """``(1 + #{permuted >= observed}) / (1 + B)``, with a relative tolerance for float noise."""
    tolerance = 1e-12 * max(1.0, abs(observed))
    return _p((1 + int((permuted >= observed - tolerance).sum())) / (1 + len(permuted)))


def _label_matrix(n_total: int, n_first: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """``permutations`` rows, each a random 0/1 vector with ``n_first`` ones (float64)."""
    base = np.zeros((permutations, n_total))
    base[:, :n_first] = 1.0
    return np.asarray(rng.permuted(base, axis=1), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------

def _mmd2(kernel: np.ndarray, labels: np.ndarray, m: int, n: int) -> np.ndarray:
    """Unbiased MMD² for each row of ``labels`` (1: first sample), from the pooled kernel."""
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    diagonal = np.diag(kernel)
    trace = float(diagonal.sum())
    a_k_a = np.einsum("bi,bi->b", labels @ kernel, labels)
    a_k_1 = labels @ row_sums
    a_diag = labels @ diagonal
    within_x = a_k_a - a_diag
    within_y = (total - 2 * a_k_1 + a_k_a) - (trace - a_diag)
    between = a_k_1 - a_k_a
    return np.asarray(within_x / (m * (m - 1)) + within_y / (n * (n - 1)) - 2 * between / (m * n))


def _pca_basis(centred: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``components`` principal axes (rows) and their singular values, zero-variance dropped.

    Eigen-decomposition of the smaller of the Gram (rows × rows) and scatter (dims × dims)
    matrices: the same axes as an SVD, and far cheaper than one when rows ≪ dims."""
    rows, dims = centred.shape
    if rows < dims:
        eigenvalues, u = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(eigenvalues)[::-1]
        singular = np.sqrt(np.maximum(eigenvalues[order], 0.0))
        keep = max(1, min(components, int((singular > 1e-6 * max(float(singular[0]), 1e-300)).sum())))
        axes = (centred.T @ u[:, order[:keep]] / np.where(singular[:keep] > 0, singular[:keep], 1.0)).T
    else:
        eigenvalues, v = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(eigenvalues)[::-1]
        singular = np.sqrt(np.maximum(eigenvalues[order], 0.0))
        keep = max(1, min(components, int((singular > 1e-6 * max(float(singular[0]), 1e-300)).sum())))
        axes = v[:, order[:keep]].T
    return np.asarray(axes), singular[:keep]


def pooled_pca(reference: np.ndarray, current: np.ndarray, components: int, *,
               whiten: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Both samples projected on the top ``components`` principal axes of the *pooled* sample.

    The projection treats every row alike whatever window it came from, so a permutation (or
    rank) test on the projected rows stays exact under no drift. ``whiten`` scales each axis to
    unit variance. Fewer axes are kept when the pooled sample has fewer rows or a lower rank."""
    if components < 1:
        raise InputError(f"components must be >= 1, got {components}")
    a, b = _pair(reference, current)
    pooled = np.vstack([a, b])
    mean = pooled.mean(axis=0)
    axes, singular = _pca_basis(pooled - mean, min(components, len(pooled) - 1))
    scale = singular / np.sqrt(len(pooled) - 1) if whiten else np.ones(len(singular))
    return (a - mean) @ axes.T / scale, (b - mean) @ axes.T / scale


def _aggregated_p(statistics: np.ndarray) -> tuple[float, np.ndarray]:
    """Permutation p-value of the smallest per-kernel p-value (MMDAgg-style min-p).

    ``statistics``: rows = the observed labelling (row 0) then ``B`` random ones, columns = kernels.
    Each row's p-value per kernel is its rank among all ``B + 1`` rows; the test statistic is the
    row's smallest p-value, calibrated against the same ``B + 1`` rows (all exchangeable with no
    drift, so the result is an exact permutation p-value). Returns it and the observed row's
    per-kernel p-values."""
    rows = len(statistics)
    per_kernel = np.empty_like(statistics)
    for j in range(statistics.shape[1]):
        column = statistics[:, j]
        tolerance = 1e-12 * max(1.0, float(np.abs(column).max()))
        ascending = np.sort(column)
        per_kernel[:, j] = (rows - np.searchsorted(ascending, column - tolerance, side="left")) / rows
    smallest = per_kernel.min(axis=1)
    return _p(float((smallest <= smallest[0] * (1 + 1e-12)).sum()) / rows), per_kernel[0]


def mmd_test(x: np.ndarray, y: np.ndarray, *, permutations: int, rng: np.random.Generator,
             components: int | None = None, bandwidth_scales: Sequence[float] = (0.5, 1.0, 2.0),
             name: str = "mmd", family: str = "query", batch: int = 256) -> TestResult:
    """Maximum mean discrepancy between the rows of ``x`` (reference) and ``y`` (current).

    With ``components``, both samples are first projected on the top principal axes of the
    pooled sample (:func:`pooled_pca`; "Failing Loudly" found reduce-then-test more powerful than
    testing every raw dimension, and so did our tuning runs). Kernels
    ``k(a, b) = exp(-|a - b|² / (2 (s·σ)²))`` with σ the median pairwise distance of the pooled
    sample (median heuristic) and ``s`` in ``bandwidth_scales``. With several scales the p-value
    is aggregated over them as in MMDAgg (Schrab et al., JMLR 2023): the smallest per-bandwidth
    permutation p-value, itself calibrated on the same permutations — no bandwidth has to be
    guessed, and the test stays exact. Nothing here looks at the labels, so the permutation test
    is exact. The pooled kernel matrices are computed once; ``permutations`` random relabellings
    cost one matrix product each batch.

    ``statistic`` is the unbiased MMD² at the median bandwidth (scale 1, or the first scale):
    the squared distance between the two samples' mean embeddings in the kernel's feature space
    (≈ 0 when the distributions agree; may be slightly negative). ``effect_size =
    sqrt(max(MMD², 0) / 2)`` at that bandwidth: MMD as a fraction of its maximum √2 for a kernel
    in [0, 1] (0: same distribution; 1: every cross-sample pair infinitely far apart relative to
    σ). ``detail`` has MMD² and the p-value per scale."""
    _check_permutations(permutations)
    scales = tuple(float(s) for s in bandwidth_scales)
    if not scales or min(scales) <= 0:
        raise InputError(f"bandwidth_scales must be positive numbers, got {bandwidth_scales!r}")
    a, b = _pair(x, y)
    if components is not None:
        a, b = pooled_pca(a, b, components)
    m, n = len(a), len(b)
    pooled = np.vstack([a, b])
    norms = np.einsum("ij,ij->i", pooled, pooled)
    sq = np.maximum(norms[:, None] + norms[None, :] - 2 * pooled @ pooled.T, 0.0)
    np.fill_diagonal(sq, 0.0)
    median = float(np.median(sq[np.triu_indices(len(pooled), 1)]))
    if median <= 0.0:  # (nearly) all points identical: any bandwidth gives the same answer
        median = 1.0
    kernels = [np.exp(-sq / (2 * median * s ** 2)) for s in scales]
    observed = np.concatenate([np.ones(m), np.zeros(n)])[None, :]
    batches = [observed] + [_label_matrix(m + n, m, min(batch, permutations - start), rng)
                            for start in range(0, permutations, batch)]
    statistics = np.stack([np.concatenate([_mmd2(kernel, labels, m, n) for labels in batches])
                           for kernel in kernels], axis=1)
    main = scales.index(1.0) if 1.0 in scales else 0
    mmd2 = float(statistics[0, main])
    if len(scales) == 1:
        p_value = _permutation_p(mmd2, statistics[1:, 0])
        per_scale = np.array([p_value])
    else:
        p_value, per_scale = _aggregated_p(statistics)
    return TestResult(name, family, mmd2, p_value, _unit(np.sqrt(max(mmd2, 0.0) / 2)), m, n,
                      {"bandwidth": float(np.sqrt(median)), "bandwidth_scales": scales,
                       "mmd2_per_scale": tuple(float(v) for v in statistics[0]),
                       "p_per_scale": tuple(float(v) for v in per_scale),
                       "permutations": permutations, "dimensions": int(a.shape[1])})


def pca_ks_test(reference: np.ndarray, current: np.ndarray, *, components: int,
                correction: str = "bonferroni", fit: str = "pooled", name: str = "pca_ks",
                family: str = "query") -> TestResult:
    """PCA, then a two-sample KS test per principal component ("Failing Loudly").

    ``fit="pooled"`` (default) takes the top ``components`` axes of the pooled sample
    (:func:`pooled_pca`); ``fit="reference"`` fits them on the reference only, as in the paper,
    where the PCA was fitted on data *separate* from the tested reference sample. Fitting on the
    very rows that are then tested inflates their spread along their own top axes (in 384
    dimensions from 100 rows, sample PCA overfits), so KS rejects too often with no drift: about
    18–20 % at α = 0.05 on SciFact query splits. The pooled fit is label-free, so each KS
    p-value is exact. Each dimension gets ``scipy.stats.ks_2samp``; the combined p-value is
    Bonferroni (smallest p × k, capped at 1) or Benjamini–Hochberg (smallest BH-adjusted p) —
    ``correction`` "bonferroni" or "bh". ``statistic`` and ``effect_size`` are the largest KS
    distance D over the dimensions: the largest gap between the two empirical CDFs along one
    axis (0: identical, 1: disjoint). ``detail`` lists the per-dimension p-values and distances."""
    if correction not in ("bonferroni", "bh"):
        raise InputError(f"correction must be 'bonferroni' or 'bh', got {correction!r}")
    if fit not in ("pooled", "reference"):
        raise InputError(f"fit must be 'pooled' or 'reference', got {fit!r}")
    if components < 1:
        raise InputError(f"components must be >= 1, got {components}")
    a, b = _pair(reference, current)
    if fit == "pooled":
        pa, pb = pooled_pca(a, b, components)
    else:
        mean = a.mean(axis=0)
        axes, _ = _pca_basis(a - mean, min(components, len(a) - 1))
        pa, pb = (a - mean) @ axes.T, (b - mean) @ axes.T
    results = [sps.ks_2samp(pa[:, j], pb[:, j]) for j in range(pa.shape[1])]
    p_values = np.array([_p(r.pvalue) for r in results])
    distances = np.array([float(r.statistic) for r in results])
    k = len(p_values)
    combined = (min(1.0, float(p_values.min()) * k) if correction == "bonferroni"
                else float(benjamini_hochberg(p_values).min()))
    return TestResult(name, family, float(distances.max()), _p(combined), _unit(distances.max()),
                      len(a), len(b),
                      {"components": k, "correction": correction, "fit": fit,
                       "p_values": tuple(float(p) for p in p_values),
                       "statistics": tuple(float(d) for d in distances)})


def _auc_columns(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each column of ``scores`` against the 0/1 column of ``labels`` (ties count half)."""
    ranks = sps.rankdata(scores, axis=0)
    positives = labels.sum(axis=0)
    negatives = labels.shape[0] - positives
    rank_sum = (ranks * labels).sum(axis=0)
    return np.asarray((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _out_of_fold_operator(z: np.ndarray, fold: np.ndarray, folds: int, l2: float) -> np.ndarray:
    """Matrix ``M`` with ``M @ y`` = out-of-fold scores of a ridge classifier trained on labels ``y``.

    For each fold, least squares with an L2 penalty on the other folds (intercept unpenalised):
    the prediction for a held-out row is linear in the training labels, so refitting under any
    relabelling is one matrix product."""
    n, d = z.shape
    operator = np.zeros((n, n))
    for j in range(folds):
        test, train = np.flatnonzero(fold == j), np.flatnonzero(fold != j)
        mean = z[train].mean(axis=0)
        centred = z[train] - mean
        weights = np.linalg.solve(centred.T @ centred + l2 * np.eye(d), centred.T)
        operator[np.ix_(test, train)] = (z[test] - mean) @ weights + 1.0 / len(train)
    return operator


def classifier_test(reference: np.ndarray, current: np.ndarray, *, permutations: int,
                    rng: np.random.Generator, folds: int = 5, components: int = 10, l2: float = 1.0,
                    name: str = "classifier", family: str = "query") -> TestResult:
    """Domain classifier: can a linear model tell current rows from reference rows?

    The rows are reduced to ``components`` whitened principal components of the pooled sample
    (:func:`pooled_pca`, label-free) and split at random into ``folds`` folds. The classifier is
    L2-regularised least squares on the 0/1 labels (ridge; for two classes the same direction as
    regularised Fisher LDA — the closed-form relative of L2 logistic regression), trained on the
    other folds and scored on each held-out fold. ``statistic`` is the AUC of the out-of-fold
    scores (0.5: indistinguishable). The p-value is an exact permutation test *with refitting*:
    the labels are shuffled ``permutations`` times and the whole cross-validation rerun with the
    same folds (the fit is linear in the labels, so that is one matrix product); it is the
    probability, with no drift, that the classifier separates the windows at least this well.
    ``effect_size = 2·max(AUC − 0.5, 0)``: 0 indistinguishable, 1 perfectly separable."""
    _check_permutations(permutations)
    if folds < 2:
        raise InputError(f"folds must be >= 2, got {folds}")
    a, b = _pair(reference, current)
    m, n = len(a), len(b)
    if min(m, n) < folds:
        raise InputError(f"classifier_test needs at least {folds} rows per window, got {m} and {n}")
    za, zb = pooled_pca(a, b, min(components, (m + n) // 2), whiten=True)
    z = np.vstack([za, zb])
    fold = rng.permutation(m + n) % folds
    operator = _out_of_fold_operator(z, fold, folds, l2)
    labels = np.concatenate([np.zeros(m), np.ones(n)])[:, None]
    observed = float(_auc_columns(labels, operator @ labels)[0])
    shuffled = _label_matrix(m + n, n, permutations, rng).T
    permuted = _auc_columns(shuffled, operator @ shuffled)
    return TestResult(name, family, observed, _permutation_p(observed, permuted),
                      _unit(2 * max(observed - 0.5, 0.0)), m, n,
                      {"auc": observed, "folds": folds, "components": int(z.shape[1]), "l2": l2,
                       "permutations": permutations})


# ---------------------------------------------------------------------------------------------
# 1-D scores and categories
# ---------------------------------------------------------------------------------------------

def _shift_detail(a: np.ndarray, b: np.ndarray) -> dict[str, DetailValue]:
    """Means, medians and Cliff's delta = P(current > reference) − P(current < reference)."""
    ranks = sps.rankdata(np.concatenate([a, b]))
    auc = (ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b))
    return {"mean_reference": float(a.mean()), "mean_current": float(b.mean()),
            "median_reference": float(np.median(a)), "median_current": float(np.median(b)),
            "cliffs_delta": float(2 * auc - 1)}


def ks_test(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], *, name: str = "ks",
            family: str = "score") -> TestResult:
    """Two-sample Kolmogorov–Smirnov test (``scipy.stats.ks_2samp``, exact for small samples).

    ``statistic`` = ``effect_size`` = D, the largest gap between the two empirical CDFs
    (0: identical, 1: no overlap). ``detail`` adds means, medians and Cliff's delta (the sign says
    whether current scores moved up or down)."""
    x, y = _vector(a, "reference"), _vector(b, "current")
    result = sps.ks_2samp(x, y)
    return TestResult(name, family, float(result.statistic), _p(result.pvalue), _unit(result.statistic),
                      len(x), len(y), _shift_detail(x, y))


def anderson_darling_test(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], *,
                          permutations: int, rng: np.random.Generator, name: str = "anderson_darling",
                          family: str = "score") -> TestResult:
    """k-sample Anderson–Darling test (``scipy.stats.anderson_ksamp``, midrank variant).

    More sensitive than KS to differences in the tails. The p-value is a permutation p-value
    (``scipy.stats.PermutationMethod``, ``permutations`` resamples) — not scipy's tabulated
    default, which is clipped to [0.001, 0.25]. ``statistic`` is the normalised AD statistic
    (≈ 0 or below under no drift); ``effect_size`` is the KS distance D (the AD statistic has no
    natural [0, 1] scale). A sample with a single distinct value overall gives p = 1."""
    _check_permutations(permutations)
    x, y = _vector(a, "reference"), _vector(b, "current")
    detail = _shift_detail(x, y)
    distance = float(sps.ks_2samp(x, y).statistic)
    if np.unique(np.concatenate([x, y])).size < 2:
        return TestResult(name, family, 0.0, 1.0, 0.0, len(x), len(y), {**detail, "note": "constant"})
    result = sps.anderson_ksamp([x, y], variant="midrank",
                                method=sps.PermutationMethod(n_resamples=permutations, rng=rng))
    return TestResult(name, family, float(result.statistic), _p(result.pvalue), _unit(distance),
                      len(x), len(y), {**detail, "permutations": permutations})


def _pool_sparse(labels: list[str], table: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Merge the columns whose expected count is below :data:`MIN_EXPECTED` into ``"(other)"``.

    The pooled column is kept while its own expected count is at least 1 (Cochran allows a few
    cells below 5, none below 1); otherwise it also absorbs the smallest remaining column."""
    totals = table.sum(axis=0)
    needed = MIN_EXPECTED * table.sum() / table.sum(axis=1).min()
    keep = [i for i in range(len(labels)) if totals[i] >= needed]
    rare = [i for i in range(len(labels)) if totals[i] < needed]
    if rare and totals[rare].sum() < needed / MIN_EXPECTED and keep:
        smallest = min(keep, key=lambda i: (totals[i], i))
        keep.remove(smallest)
        rare.append(smallest)
    names = [labels[i] for i in keep] + (["(other)"] if rare else [])
    columns = [table[:, keep]] + ([table[:, rare].sum(axis=1, keepdims=True)] if rare else [])
    return names, np.hstack(columns)


def chi_square_test(reference_labels: Sequence[str], current_labels: Sequence[str], *,
                    name: str = "chi_square", family: str = "categorical") -> TestResult:
    """Pearson chi-square test of the category shares (``scipy.stats.chi2_contingency``).

    The 2 × k table counts each label in each window (labels in sorted order); categories whose
    expected count is below 5 are pooled into ``"(other)"`` first (Cochran's rule; the chi-square
    approximation is poor otherwise). No continuity correction. ``statistic`` is chi²;
    ``effect_size`` is Cramér's V = sqrt(chi² / N) (0: same shares, 1: the windows share no
    category). With fewer than two columns left there is nothing to compare: statistic 0, p = 1."""
    ref, cur = [str(v) for v in reference_labels], [str(v) for v in current_labels]
    if not ref or not cur:
        raise InputError("chi_square_test needs at least one label in each window")
    labels = sorted(set(ref) | set(cur))
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((2, len(labels)))
    np.add.at(table[0], [index[v] for v in ref], 1.0)
    np.add.at(table[1], [index[v] for v in cur], 1.0)
    names, pooled = _pool_sparse(labels, table)
    shares = pooled / pooled.sum(axis=1, keepdims=True)
    detail: dict[str, DetailValue] = {
        "categories": tuple(names), "reference_shares": tuple(float(s) for s in shares[0]),
        "current_shares": tuple(float(s) for s in shares[1])}
    if pooled.shape[1] < 2:
        return TestResult(name, family, 0.0, 1.0, 0.0, len(ref), len(cur), {**detail, "note": "too sparse"})
    chi2, p_value, dof, _ = sps.chi2_contingency(pooled, correction=False)
    return TestResult(name, family, float(chi2), _p(p_value), _unit(np.sqrt(chi2 / pooled.sum())),
                      len(ref), len(cur), {**detail, "dof": int(dof)})


def psi(reference: np.ndarray | Sequence[float], current: np.ndarray | Sequence[float],
        bins: int = 10) -> float:
    """Population stability index ``Σ (c_i − r_i) · ln(c_i / r_i)`` over reference-quantile bins.

    ``r_i``, ``c_i``: the share of each window in bin ``i``; the bins are the reference's
    ``bins``-quantiles (duplicate edges merged, outer bins open), shares floored at 1e-4. A
    display number, not a test (it has no false-alarm control): the usual reading is < 0.1
    stable, 0.1–0.25 moderate shift, > 0.25 major shift."""
    if bins < 2:
        raise InputError(f"bins must be >= 2, got {bins}")
    r, c = _vector(reference, "reference"), _vector(current, "current")
    edges = np.unique(np.quantile(r, np.arange(1, bins) / bins))
    r_share = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1) / len(r)
    c_share = np.bincount(np.searchsorted(edges, c, side="right"), minlength=len(edges) + 1) / len(c)
    r_share, c_share = np.maximum(r_share, PSI_FLOOR), np.maximum(c_share, PSI_FLOOR)
    return float(((c_share - r_share) * np.log(c_share / r_share)).sum())


# ---------------------------------------------------------------------------------------------
# Multiple testing
# ---------------------------------------------------------------------------------------------

def _p_array(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InputError("p-values must be finite numbers in [0, 1]")
    return p


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order.

    Sorted ascending, ``adj_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j))``. Rejecting every
    hypothesis with ``adj ≤ α`` controls the family-wise error rate (the chance of *any* false
    alarm) at α, under any dependence between the tests."""
    p = _p_array(p_values)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input order.

    Sorted ascending, ``adj_(i) = min_{j ≥ i} min(1, m · p_(j) / j)``. Rejecting ``adj ≤ q``
    controls the false discovery rate at q (independent or positively dependent tests); when no
    hypothesis is false it also bounds the chance of any rejection by q."""
    p = _p_array(p_values)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return adjusted
