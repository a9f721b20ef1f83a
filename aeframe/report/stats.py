"""Statistics over seeds: mean ± std, a Student-t confidence interval, a paired t-test, and Holm's
correction for running many of them.

Dependency-free (only :mod:`math`): the Student t distribution is computed here. Its CDF goes
through the regularised incomplete beta function, evaluated as a continued fraction with the
modified Lentz method; its quantile is found by bisection on the CDF.

Zero variance is handled explicitly rather than by dividing by zero:

* :func:`confidence_interval` of values that all agree is ``(mean, mean)``;
* :func:`paired_t_test` with every difference 0 gives ``t = 0, p = 1`` (no evidence of a
  difference). With every difference the same non-zero number (a quantised metric such as an
  accuracy moves by the same step on every seed) the t statistic is ``±inf`` and its p would be 0,
  evidence no number of seeds justifies: two seeds would "prove" any such difference. There the
  test falls back to the exact sign-flip (permutation) test of the paired differences, whose p for
  n equal differences is ``2 ** (1 - n)``: only the two assignments with every sign alike are as
  extreme. So 2 seeds give p = 0.5, 5 give 0.0625 and 6 give 0.031. Differences that agree to
  within ``ZERO_SPREAD`` of their size count as equal: floating-point rounding must not turn a
  quantised step into a spread.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["mean_std", "confidence_interval", "paired_t_test", "sign_flip_p", "holm", "t_cdf", "t_sf",
           "t_quantile", "regularized_incomplete_beta", "ZERO_SPREAD"]

# Differences whose standard deviation is at most this share of their mean are equal: accuracies that
# differ by 1/10000 on every seed carry rounding noise of about 1e-17, not a spread.
ZERO_SPREAD = 1e-9

_EPS = 1e-15  # relative accuracy of the continued fraction
_TINY = 1e-300  # stands in for 0 in Lentz's method, where a denominator would vanish
_MAX_ITERATIONS = 10_000


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); the std is None for a single value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Two-sided Student-t interval for the mean: mean ± t_{n-1, (1+level)/2} · s / √n.

    None for fewer than two values (no spread to estimate). Values that all agree give
    ``(mean, mean)``. A non-finite value gives a ``(nan, nan)`` interval.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, not {level!r}")
    values = [float(v) for v in values]
    if len(values) < 2:
        return None
    if not all(math.isfinite(v) for v in values):
        return math.nan, math.nan
    mean, std = mean_std(values)
    assert std is not None
    if std == 0:
        return mean, mean
    half = t_quantile((1 + level) / 2, len(values) - 1) * std / math.sqrt(len(values))
    return mean - half, mean + half


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """Two-sided paired t-test on the differences ``a[i] - b[i]``: returns ``(t, p)``.

    t = mean(d) / (s_d / √n) with n − 1 degrees of freedom, p = P(|T| ≥ |t|). None for fewer than
    two pairs. Zero spread (see ``ZERO_SPREAD``): all differences 0 → ``(0.0, 1.0)``; all equal and
    non-zero → ``(±inf, sign_flip_p(n))``, never p = 0. Any non-finite value → ``(nan, nan)``.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_t_test needs pairs: {len(a)} values against {len(b)}")
    differences = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(differences)
    if n < 2:
        return None
    if not all(math.isfinite(d) for d in differences):
        return math.nan, math.nan
    mean, std = mean_std(differences)
    assert std is not None
    if mean == 0 and std == 0:
        return 0.0, 1.0
    if std <= ZERO_SPREAD * abs(mean):
        return math.copysign(math.inf, mean), sign_flip_p(n)
    t = mean / (std / math.sqrt(n))
    return t, _two_sided_p(t, n - 1)


def sign_flip_p(n: int) -> float:
    """The exact two-sided p of the sign-flip permutation test for ``n`` equal, non-zero paired
    differences: of the ``2 ** n`` ways to flip their signs, the two with every sign alike are as
    extreme as the data, so p = 2 / 2 ** n."""
    if n < 1:
        raise ValueError(f"sign_flip_p needs at least one difference, not {n}")
    return 2.0 ** (1 - n)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``p_values`` for testing them all at once.

    The i-th smallest of the m usable p-values is multiplied by ``m - i`` (i from 0), each adjusted
    value is at least the one before it, and none exceeds 1; an adjusted p below α then controls the
    chance of any false † in the family at α. ``None`` and NaN are not tests: they come back as they
    were and do not count towards m.
    """
    usable = sorted((p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p))
    adjusted: list[float | None] = list(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(usable):
        running = max(running, min(1.0, (len(usable) - rank) * p))
        adjusted[i] = running
    return adjusted


# -- the Student t distribution ----------------------------------------------------------------


def _check_df(df: float) -> None:
    if not df > 0:  # also rejects nan
        raise ValueError(f"degrees of freedom must be positive, not {df!r}")


def _two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) = I_{df/(df+t²)}(df/2, 1/2), computed without the cancellation of 1 − cdf."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2))
    return regularized_incomplete_beta(df / 2, 0.5, df / (df + t * t))


def t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` degrees of freedom (``df`` may be fractional)."""
    _check_df(df)
    if math.isnan(t):
        return math.nan
    tail = _two_sided_p(t, df) / 2  # P(T > |t|)
    return tail if t >= 0 else 1 - tail


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` > 0 degrees of freedom (``inf`` gives the normal)."""
    _check_df(df)
    if math.isnan(t):
        return math.nan
    tail = _two_sided_p(t, df) / 2  # P(T > |t|) = P(T < -|t|)
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T ≤ t) = p, by bisection on the CDF (in the upper tail, on 1 − CDF).

    ``p = 0`` and ``p = 1`` give ∓inf. Accurate to about 1e-12 relative.
    """
    _check_df(df)
    if not 0 <= p <= 1:
        raise ValueError(f"a probability lies in [0, 1], not {p!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1 - p, df) if p > 0 else -math.inf
    if p == 1:
        return math.inf
    # Solve P(T > t) = q for t > 0; the tail falls as t grows. Work with q itself (not p), so that
    # p close to 1 keeps its precision.
    q = 1 - p
    low, high = 0.0, 1.0
    while t_sf(high, df) > q:
        low, high = high, high * 2
        if high > 1e300:
            return math.inf
    for _ in range(2000):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if t_sf(middle, df) > q:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2


# -- the regularised incomplete beta function --------------------------------------------------


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0 and 0 ≤ x ≤ 1.

    I_x(a, b) = x^a (1 − x)^b / (a B(a, b)) · 1 / (1 + d_1 / (1 + d_2 / (1 + …))) with
    d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)) and
    d_{2m}   = m (b − m) x / ((a + 2m − 1)(a + 2m)).
    The fraction converges fast for x < (a + 1) / (a + b + 2); above that the symmetry
    I_x(a, b) = 1 − I_{1−x}(b, a) is used.
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"the incomplete beta function needs a, b > 0, not a={a!r}, b={b!r}")
    if math.isnan(x) or not 0 <= x <= 1:
        raise ValueError(f"the incomplete beta function needs 0 <= x <= 1, not {x!r}")
    if x == 0 or x == 1:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction 1 / (1 + d_1 / (1 + d_2 / …)) by the modified Lentz method.

    Lentz: f = b_0; C = f; D = 0; then for each term j: D = b_j + a_j D, C = b_j + a_j / C (each
    replaced by a tiny number if it is 0), D = 1 / D, f *= C D, until C D is 1 to within _EPS.
    Here b_0 = 0 and the first term is a_1 = 1, b_1 = 1 + d_1, which leaves f = D = 1/(1 + d_1)
    after it; every later term has b_j = 1 and a_j = d_j.
    """
    def nonzero(value: float) -> float:
        return value if abs(value) > _TINY else _TINY

    c = 1.0
    d = 1 / nonzero(1 - (a + b) * x / (a + 1))  # the d_1 term
    f = d
    for m in range(1, _MAX_ITERATIONS):
        # Even term d_{2m}.
        coefficient = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 / nonzero(1 + coefficient * d)
        c = nonzero(1 + coefficient / c)
        f *= c * d
        # Odd term d_{2m+1}.
        coefficient = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 / nonzero(1 + coefficient * d)
        c = nonzero(1 + coefficient / c)
        delta = c * d
        f *= delta
        if abs(delta - 1) < _EPS:
            return f
    raise ArithmeticError(f"incomplete beta fraction did not converge (a={a}, b={b}, x={x})")
