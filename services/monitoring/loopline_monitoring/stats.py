"""The drift statistics, vectorised with numpy: PSI, two-sample Kolmogorov–Smirnov, chi-square, Jensen–Shannon
distance and Wasserstein distance.

Every function is pure and takes NaN-free arrays (callers drop missing values first). The reference side
is usually prepared once per reference profile (`SortedSample`) and reused for every window.

`ks_2samp` returns the same statistic and p-value as `scipy.stats.ks_2samp(x, y)` (two-sided,
method="auto") bit for bit: the statistic is the maximum of the same floating-point differences
`c1/n1 - c2/n2`, evaluated at the same points (every distinct value of the pooled sample), and the
p-value is computed by the same scipy routines with the same choice scipy makes (exact when both samples
have at most 10 000 values, Smirnov's asymptotic distribution otherwise, exact falling back to
asymptotic when it cannot be computed). Only the statistic is computed differently: for small samples with
one sort of the pooled sample instead of two sorts and two binary searches over it; for large ones (n1 + n2 >=
BUCKETED_MIN_N) in linear time, by counting both samples over order-preserving value buckets and sorting only
the few buckets where the extreme difference can lie (`ks_statistic_bucketed`). Exact quantiles of large
arrays (PSI's bins) select only the buckets holding the ranks they need (`order_statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.special import rel_entr  # type: ignore[import-untyped]
from scipy.stats import chi2 as chi2_distribution  # type: ignore[import-untyped]
from scipy.stats import distributions
from scipy.stats._stats_py import _attempt_exact_2kssamp  # type: ignore[import-untyped]  # scipy's exact KS p

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# scipy.stats.ks_2samp(method="auto") is exact when max(n1, n2) <= this, asymptotic above.
KS_MAX_AUTO_N = 10_000
# PSI floor for empty bins (a bin with no values would make the logarithm infinite); the value Evidently
# and most PSI implementations use.
PSI_EPSILON = 1e-4

_ONE = np.uint64(1)


@dataclass(frozen=True)
class KsResult:
    statistic: float
    pvalue: float
    method: str  # "exact" or "asymp", as scipy would have chosen


def ks_counts(x: Floats, y: Floats) -> tuple[Ints, Ints]:
    """(c1, c2) at every distinct value v of the pooled sample, ascending: c1 = #x <= v, c2 = #y <= v.

    One sort of the pooled sample with each value's sample label written into the lowest bit of its
    float64 representation, so that labels come out in pooled order without an argsort (ties and the
    order within a group of equal values do not matter: only the counts at the end of each group do).
    Overwriting that bit merges two values only when they differ in the lowest bit alone; when the pooled
    sample has any group of more than one value (ties, or such neighbours) the exact distinct count is
    checked with a second sort, and if a merge happened the counts come from a stable argsort instead.
    """
    n1 = x.shape[0]
    pooled = np.concatenate([x, y])
    pooled += 0.0  # -0.0 -> 0.0, which compares equal to it
    if not np.isfinite(pooled).all():  # the label bit would turn an infinity into a NaN
        return _ks_counts_argsort(x, y)
    bits = pooled.view(np.uint64)
    bits &= ~_ONE
    bits[n1:] |= _ONE
    pooled.sort()  # as floats: values and labels together
    boundary = (bits[1:] ^ bits[:-1]) > _ONE  # prefix (all bits but the label) changes
    labels = (bits & _ONE).view(np.int64)
    if bool(boundary.all()):  # every value distinct: no merge possible
        c2 = np.cumsum(labels)
        return np.arange(1, bits.shape[0] + 1, dtype=np.int64) - c2, c2
    ends = np.append(np.flatnonzero(boundary), bits.shape[0] - 1)
    true_sorted = np.sort(np.concatenate([x, y]) + 0.0)
    if int(np.count_nonzero(true_sorted[1:] != true_sorted[:-1])) + 1 != ends.shape[0]:
        return _ks_counts_argsort(x, y)
    c2 = np.cumsum(labels)[ends]
    return ends + 1 - c2, c2


def _ks_counts_argsort(x: Floats, y: Floats) -> tuple[Ints, Ints]:
    pooled = np.concatenate([x, y])
    order = np.argsort(pooled, kind="stable")
    values = pooled[order]
    c2_running = np.cumsum(order >= x.shape[0], dtype=np.int64)
    ends = np.append(np.flatnonzero(values[1:] != values[:-1]), values.shape[0] - 1)
    c2 = c2_running[ends]
    return ends + 1 - c2, c2


def ks_statistic(x: Floats, y: Floats) -> float:
    """The two-sided KS statistic max |F_x - F_y|, equal to scipy's before its exact-mode rounding."""
    n1, n2 = x.shape[0], y.shape[0]
    c1, c2 = ks_counts(x, y)
    diffs = c1 / n1 - c2 / n2
    min_s = float(np.clip(-diffs.min(), 0, 1))
    max_s = float(diffs.max())
    return min_s if min_s > max_s else max_s


@lru_cache(maxsize=65_536)
def _exact_pvalue(n1: int, n2: int, h: int) -> tuple[bool, float]:
    """scipy's exact two-sided p-value for D = h / lcm(n1, n2); it depends only on (n1, n2, h)."""
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    success, _, prob = _attempt_exact_2kssamp(n1, n2, g, h / lcm, "two-sided")
    return bool(success), float(prob)


def ks_pvalue(d: float, n1: int, n2: int) -> KsResult:
    """The statistic and p-value scipy.stats.ks_2samp reports for a raw statistic `d` (two-sided, auto)."""
    g = math.gcd(n1, n2)
    method = "exact" if max(n1, n2) <= KS_MAX_AUTO_N else "asymp"
    prob = -np.inf
    if method == "exact":
        lcm = (n1 // g) * n2
        h = int(np.round(d * lcm))
        d = h * 1.0 / lcm
        success, prob = _exact_pvalue(n1, n2, h) if h else (True, 1.0)
        if not success:
            method = "asymp"
    if method == "asymp":
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        prob = distributions.kstwo.sf(d, np.round(en))
    return KsResult(float(np.float64(d)), float(np.clip(prob, 0, 1)), method)


def ks_2samp(x: Floats, y: Floats) -> KsResult:
    """Two-sample KS test, equal to scipy.stats.ks_2samp(x, y) (two-sided, method="auto")."""
    n1, n2 = x.shape[0], y.shape[0]
    if n1 == 0 or n2 == 0:
        raise ValueError("KS needs two non-empty samples")
    if n1 + n2 >= BUCKETED_MIN_N:
        buckets = ValueBuckets.spanning([x, y], bucket_count(n1 + n2))
        if buckets is not None:
            d = ks_statistic_bucketed(BucketedSample(x, buckets), BucketedSample(y, buckets), buckets)
            return ks_pvalue(d, n1, n2)
    return ks_pvalue(ks_statistic(x, y), n1, n2)


# ---- large samples: linear time through order-preserving value buckets ---------------------------------
#
# Sorting is what costs in KS and in exact quantiles, and neither needs a full sort. Values are mapped onto
# equal-width buckets by an order-preserving map (below), counted per bucket, and only the few buckets where
# the answer can lie are sorted: for KS, the buckets where the two empirical CDFs can differ by more than the
# largest difference already seen at a bucket boundary; for a quantile, the bucket holding its rank. Which
# values share a bucket decides only how much is left to sort, never a result, so skewed or tied data are
# slower, not wrong.

# n1 + n2 from which KS and quantiles take the bucketed path; below it one sort is as fast.
BUCKETED_MIN_N = 1 << 15
# Share of the values folded into each end bucket (the range spans the inner quantiles of a subsample).
_TAIL = 0.002
_PROBE = 4096


def bucket_count(n: int, per_bucket: int = 32) -> int:
    """Buckets for `n` values in all: a power of two near n / per_bucket, at least 1024, at most 2**20."""
    return 1 << min(20, max(10, (max(n // per_bucket, 1)).bit_length()))


class ValueBuckets:
    """An order-preserving map of float64 values onto `count` equal-width buckets over [lo, hi].

    index(v) = trunc(clip((v - lo) * scale, 0, count - 1)). Each step (subtraction, multiplication by a
    positive number, clipping, truncation) is monotone in IEEE arithmetic, so v <= w implies
    index(v) <= index(w): a bucket holds an interval of values, equal values share a bucket, and buckets
    come in the order of their values. Values below lo or above hi, infinities included, land in the end
    buckets. Values must not be NaN.
    """

    def __init__(self, lo: float, hi: float, count: int) -> None:
        self.lo = float(lo)
        self.count = count
        self.scale = count / (float(hi) - self.lo)

    @classmethod
    def spanning(cls, samples: list[Floats], count: int, *, is_sorted: bool = False) -> ValueBuckets | None:
        """Buckets over the inner quantiles (0.2 % to 99.8 %) of a strided subsample of `samples`; None when
        the values leave no usable range (all equal, or a span that overflows)."""
        probe = np.concatenate([s[:: max(1, s.shape[0] // _PROBE)] for s in samples])
        if not is_sorted:
            probe.sort()
        k = probe.shape[0]
        lo, hi = float(probe[int(_TAIL * k)]), float(probe[k - 1 - int(_TAIL * k)])
        if not hi > lo or not math.isfinite(lo) or not math.isfinite(hi):
            lo, hi = float(probe[0]), float(probe[-1])
            finite = probe[np.isfinite(probe)]
            if finite.shape[0]:
                lo, hi = float(finite[0]), float(finite[-1])
        if not hi > lo:
            return None
        buckets = cls(lo, hi, count)
        return buckets if math.isfinite(buckets.scale) and buckets.scale > 0 else None

    def index(self, values: Floats) -> npt.NDArray[np.intp]:
        with np.errstate(over="ignore"):  # a value far outside the range scales to infinity: an end bucket
            position = np.subtract(values, self.lo)
            position *= self.scale
        np.clip(position, 0.0, self.count - 1, out=position)
        return position.astype(np.intp)


class BucketedSample:
    """A sample counted per bucket of a ValueBuckets map, able to hand out the values of chosen buckets."""

    def __init__(self, values: Floats, buckets: ValueBuckets, *, is_sorted: bool = False) -> None:
        self.values = values
        self.n = int(values.shape[0])
        index = buckets.index(values)
        self.counts: Ints = np.bincount(index, minlength=buckets.count).astype(np.int64, copy=False)
        self.below: Ints = np.cumsum(self.counts) - self.counts  # values in the buckets before each
        # a sorted sample hands out slices; an unsorted one keeps its bucket of every value
        self._index = None if is_sorted else index

    def take(self, chosen: npt.NDArray[np.bool_], ids: npt.NDArray[np.intp]) -> Floats:
        """The values in the chosen buckets (`ids` = np.flatnonzero(chosen)), in no particular order."""
        if self._index is not None:
            return self.values[chosen[self._index]]
        lengths = self.counts[ids]
        total = int(lengths.sum())
        shift = self.below[ids] - (np.cumsum(lengths) - lengths)  # from position in the result to the sample
        return self.values[np.repeat(shift, lengths) + np.arange(total)]


def ks_statistic_bucketed(a: BucketedSample, b: BucketedSample, buckets: ValueBuckets) -> float:
    """The KS statistic of two samples counted over the same buckets; equal to ks_statistic (and so to
    scipy's) bit for bit.

    scipy takes the extremes of f(v) = c1(v)/n1 - c2(v)/n2 over every pooled value v. At the boundary after
    bucket j, f equals its value at the largest pooled value so far (or 0.0, which f also takes at the
    largest pooled value), so those boundary values are values of f. Inside bucket j, c1 lies between the
    counts at its two boundaries and so does c2; with fl(c/n) monotone in c, f inside stays within
    [lo1 - hi2, hi1 - lo2] computed the same way. Only buckets whose bounds pass the extremes seen at the
    boundaries can hold the answer: their values are sorted and f is evaluated at every distinct value in
    them, with the same floating-point operations as scipy.
    """
    n1, n2 = a.n, b.n
    above1, above2 = a.below + a.counts, b.below + b.counts
    hi1, lo1 = above1 / n1, a.below / n1
    hi2, lo2 = above2 / n2, b.below / n2
    boundary = hi1 - hi2
    top, bottom = float(boundary.max()), float(boundary.min())
    chosen = (hi1 - lo2 > top) | (lo1 - hi2 < bottom)
    ids = np.flatnonzero(chosen)
    if ids.shape[0]:
        xs, ys = a.take(chosen, ids), b.take(chosen, ids)
        pooled = np.concatenate([xs, ys])
        order = np.argsort(pooled, kind="stable")
        values = pooled[order]
        c2 = np.cumsum(order >= xs.shape[0], dtype=np.int64)
        c1 = np.arange(1, values.shape[0] + 1, dtype=np.int64) - c2
        last = np.append(np.flatnonzero(values[1:] != values[:-1]), values.shape[0] - 1)
        j = buckets.index(values[last])
        # values of each sample below bucket j that the chosen buckets do not hold (k: j among the chosen)
        k = np.searchsorted(ids, j)
        kept1, kept2 = a.counts[ids], b.counts[ids]
        skipped1 = a.below[ids] - (np.cumsum(kept1) - kept1)
        skipped2 = b.below[ids] - (np.cumsum(kept2) - kept2)
        diffs = (skipped1[k] + c1[last]) / n1 - (skipped2[k] + c2[last]) / n2
        top, bottom = max(top, float(diffs.max())), min(bottom, float(diffs.min()))
    min_s = float(np.clip(-bottom, 0, 1))
    return min_s if min_s > top else top


def order_statistics(values: Floats, ranks: Ints) -> Floats:
    """np.sort(values)[ranks]; for large arrays without the full sort: only the buckets holding the ranks
    are sorted."""
    n = values.shape[0]
    buckets = ValueBuckets.spanning([values], bucket_count(n, 64)) if n >= BUCKETED_MIN_N else None
    if buckets is None:
        return np.sort(values)[ranks]
    sample = BucketedSample(values, buckets)
    holder = np.searchsorted(sample.below + sample.counts, ranks, side="right")  # the bucket of each rank
    chosen = np.zeros(buckets.count, dtype=bool)
    chosen[holder] = True
    subset = np.sort(sample.take(chosen, np.flatnonzero(chosen)))
    kept = np.where(chosen, sample.counts, 0)
    kept_below = np.cumsum(kept) - kept
    result: Floats = subset[kept_below[holder] + (ranks - sample.below[holder])]
    return result


class SortedSample:
    """A reference sample prepared once: sorted, with its size and spread (and, when large, counted over
    value buckets for the linear-time KS)."""

    def __init__(self, values: Floats) -> None:
        clean = np.asarray(values, dtype=np.float64)
        clean = clean[~np.isnan(clean)]
        self.values = np.sort(clean)
        self.n = int(self.values.shape[0])
        self.std = float(np.std(self.values)) if self.n else 0.0
        self._bucketed: BucketedSample | None = None
        self._buckets: ValueBuckets | None = None
        if 2 * self.n >= BUCKETED_MIN_N:
            self._buckets = ValueBuckets.spanning([self.values], bucket_count(2 * self.n), is_sorted=True)
            if self._buckets is not None:
                self._bucketed = BucketedSample(self.values, self._buckets, is_sorted=True)

    def ks(self, current: Floats) -> KsResult:
        """ks_2samp(reference, current), equal to scipy's."""
        m = current.shape[0]
        if self._bucketed is None or self._buckets is None or m == 0 or self.n + m < BUCKETED_MIN_N:
            return ks_2samp(self.values, current)
        window = BucketedSample(current, self._buckets)
        return ks_pvalue(ks_statistic_bucketed(self._bucketed, window, self._buckets), self.n, m)

    def wasserstein(self, current: Floats) -> float:
        return wasserstein_sorted(self.values, np.sort(current))


def wasserstein_sorted(u_sorted: Floats, v_sorted: Floats) -> float:
    """First Wasserstein distance between two samples given sorted (scipy.stats.wasserstein_distance)."""
    pooled = np.concatenate([u_sorted, v_sorted])
    pooled.sort(kind="mergesort")
    deltas = np.diff(pooled)
    u_cdf = np.searchsorted(u_sorted, pooled[:-1], "right") / u_sorted.shape[0]
    v_cdf = np.searchsorted(v_sorted, pooled[:-1], "right") / v_sorted.shape[0]
    return float(np.dot(np.abs(u_cdf - v_cdf), deltas))


def wasserstein(u: Floats, v: Floats) -> float:
    return wasserstein_sorted(np.sort(u), np.sort(v))


def normed_wasserstein(reference: SortedSample, current: Floats, *, reference_std: float | None = None) -> float:
    """Wasserstein distance divided by the reference's standard deviation (Evidently's "wasserstein")."""
    std = reference.std if reference_std is None or reference_std <= 0 else reference_std
    distance = reference.wasserstein(current)
    if std <= 0:
        return 0.0 if distance == 0 else math.inf
    return distance / std


def bin_counts(edges: Floats, values: Floats) -> Ints:
    """Counts of `values` in the k = len(edges) - 1 bins [e0, e1), [e1, e2), ..., [e(k-1), ek].

    The first and last bins are open-ended: values below e0 count in the first bin and values above ek in
    the last, never dropped. With fewer than two edges there is a single bin.
    """
    k = max(edges.shape[0] - 1, 1)
    inner = edges[1:-1]
    if inner.shape[0] > 32:
        return np.bincount(np.searchsorted(inner, values, side="right"), minlength=k).astype(np.int64)
    # Few edges (quantile bins): one vectorised comparison per edge beats a binary search per value.
    at_least = [np.count_nonzero(values >= e) for e in inner]  # values in bin i or above, for i = 1..k-1
    cumulative = np.array([values.shape[0], *at_least, 0], dtype=np.int64)
    return cumulative[:-1] - cumulative[1:]


def psi(reference_fractions: Floats, current_fractions: Floats, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index sum((c - r) * ln(c / r)), with empty bins floored at `epsilon`."""
    r = np.maximum(reference_fractions, epsilon)
    c = np.maximum(current_fractions, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def fractions(counts: npt.NDArray[np.int64] | Floats) -> Floats:
    total = float(np.sum(counts))
    return np.asarray(counts, dtype=np.float64) / total if total > 0 else np.zeros(len(counts), dtype=np.float64)


def jensen_shannon(p: Floats, q: Floats) -> float:
    """Jensen–Shannon distance (natural log), as scipy.spatial.distance.jensenshannon(p, q)."""
    p = p / np.sum(p)
    q = q / np.sum(q)
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))
    return float(np.sqrt(js / 2.0))


def chi2_homogeneity(reference_counts: Floats, current_counts: Floats) -> tuple[float, float, int]:
    """Chi-square test that two count vectors come from one distribution (a 2 x k contingency table).

    Equal to scipy.stats.chi2_contingency([reference, current], correction=False) after dropping the
    categories empty in both rows; for two categories it is the two-proportion z-test. Returns
    (statistic, p-value, degrees of freedom).
    """
    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, float(chi2_distribution.sf(statistic, dof)), dof


def holm(pvalues: Floats, alpha: float) -> tuple[npt.NDArray[np.bool_], Floats]:
    """Holm's step-down procedure: (rejected, critical value of each test at its rank).

    It keeps the probability of any false rejection at most `alpha` whatever the dependence between the
    tests (features are rarely independent), and rejects at least what Bonferroni rejects.
    """
    m = pvalues.shape[0]
    rejected = np.zeros(m, dtype=bool)
    critical = np.zeros(m, dtype=np.float64)
    if m == 0:
        return rejected, critical
    order = np.argsort(pvalues, kind="stable")
    steps = alpha / (m - np.arange(m))
    critical[order] = steps
    passing = pvalues[order] <= steps
    stop = m if passing.all() else int(np.argmin(passing))
    rejected[order[:stop]] = True
    return rejected, critical


def quantile_edges(values: Floats, bins: int) -> Floats:
    """Bin edges at the quantiles of `values` (k + 1 edges for k bins), duplicates removed."""
    if values.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return np.unique(quantiles_of(values, np.linspace(0.0, 1.0, bins + 1)))


def quantiles_of(values: Floats, probabilities: Floats) -> Floats:
    """np.quantile(values, probabilities) (method "linear"), bit for bit, from unsorted values: only the order
    statistics the interpolation needs are selected (order_statistics)."""
    return _interpolate(values.shape[0], probabilities, lambda ranks: order_statistics(values, ranks))


def quantiles(sorted_values: Floats, probabilities: Floats) -> Floats:
    """np.quantile(values, probabilities) (method "linear"), bit for bit, from already sorted values."""
    return _interpolate(sorted_values.shape[0], probabilities, lambda ranks: sorted_values[ranks])


def _interpolate(n: int, probabilities: Floats, at: Callable[[Ints], Floats]) -> Floats:
    """numpy's linear quantile interpolation between the order statistics at floor and floor + 1."""
    virtual = (n - 1) * probabilities
    lower = np.floor(virtual).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    t = virtual - lower
    ranks, where = np.unique(np.concatenate([lower, upper]), return_inverse=True)
    selected = at(ranks)
    a, b = selected[where[: lower.shape[0]]], selected[where[lower.shape[0]:]]
    diff = b - a
    result: Floats = a + diff * t
    np.subtract(b, diff * (1 - t), out=result, where=t >= 0.5)
    return result
