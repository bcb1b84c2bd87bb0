"""Missingness protocols: which modality of which sample is observed.

Every function here returns a boolean *presence mask* of shape ``(n, M)``:
``mask[i, m]`` is ``True`` when sample ``i`` keeps (observes) modality ``m``
and ``False`` when that modality is missing.  All of them work for any number
of modalities ``M >= 1`` and are deterministic for a given seed: ``seed`` may be
``None`` (fresh entropy), an ``int`` (passed to :func:`numpy.random.default_rng`)
or a :class:`numpy.random.Generator`, which is then used, and advanced, in place.

Protocols
---------
:func:`standard_mask`
    The paper's "standard" protocol ``a_b_c``: sample ``i`` keeps modality
    ``m`` with probability ``p_m``, independently.
:func:`complex_mask`
    The paper's "complex" protocol: a distribution over presence *patterns*
    (e.g. 20% all three modalities, 20% text only, ...), realised with exact
    counts.
:func:`missing_rate_mask`
    Every slot missing with probability ``rate``, each row keeping at least one
    modality, calibrated so that the realised fraction of missing slots is
    ``rate``.
:func:`parse_config` / :func:`make_mask`
    The paper's configuration strings (``"70_100_70"``,
    ``"standard_70_100_70"``, ``"complex_20_20_20_10_10_10_10"``) or plain
    keyword arguments.

This module depends on numpy only.
"""
from __future__ import annotations

import itertools
import math
import operator
import re
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

__all__ = [
    "standard_mask",
    "complex_mask",
    "missing_rate_mask",
    "default_patterns",
    "parse_config",
    "make_mask",
    "mask_stats",
]

SeedLike = Union[None, int, np.random.Generator, np.random.SeedSequence, np.random.BitGenerator]

# Relative tolerance for "the probabilities sum to 1 (or 100)".
_SUM_RTOL = 1e-6


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _rng(seed: SeedLike) -> np.random.Generator:
    """A Generator: ``seed`` itself if it is one, else ``default_rng(seed)``."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be None, an int or a numpy Generator, not a bool")
    return np.random.default_rng(seed)


def _check_n(n: Any, name: str = "n") -> int:
    """``n`` as a non-negative Python int (numpy ints accepted, floats rejected)."""
    if isinstance(n, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not a bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(n).__name__}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def _as_prob_vector(values: Any, name: str) -> np.ndarray:
    """A non-empty, finite, 1-D float64 vector."""
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of numbers, not a string "
                        f"(use parse_config / make_mask for config strings)")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty (need at least one modality)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _normalise_weights(values: np.ndarray, name: str) -> np.ndarray:
    """Non-negative weights summing to 100 (percent) or 1, as fractions."""
    if np.any(values < 0):
        raise ValueError(f"{name} must be non-negative, got {values.tolist()}")
    total = float(values.sum())
    if math.isclose(total, 100.0, rel_tol=_SUM_RTOL):
        return values / total
    if math.isclose(total, 1.0, rel_tol=_SUM_RTOL):
        return values / total
    raise ValueError(
        f"{name} must sum to 100 (percentages) or to 1 (fractions); "
        f"got {values.tolist()} summing to {total:g}")


def _exact_counts(n: int, weights: np.ndarray) -> np.ndarray:
    """Largest-remainder (Hamilton) apportionment of ``n`` items to ``weights``.

    Each weight is first turned into an exact rational (denominator at most
    1e9, so that 0.2 is 1/5 and 1/3 is 1/3), so that ``n * p`` has no float
    rounding: 100 * 20% gives exactly 20.  Every quota ``n * p_k`` is rounded
    down, and the items left over go one each to the largest fractional parts;
    ties go to the lower index.  The counts sum to ``n`` and each differs from
    its quota ``n * p_k`` by less than 1.
    """
    fr = [Fraction(float(w)).limit_denominator(10**9) for w in weights]
    total = sum(fr)
    if total <= 0:
        raise ValueError("weights must not all be zero")
    quotas = [n * f / total for f in fr]
    counts = [math.floor(q) for q in quotas]
    left = n - sum(counts)
    # largest remainder first, lower index on ties (stable sort)
    order = sorted(range(len(fr)), key=lambda k: -(quotas[k] - counts[k]))
    for k in order[:left]:
        counts[k] += 1
    return np.asarray(counts, dtype=np.int64)


def default_patterns(n_modalities: int) -> list[tuple[int, ...]]:
    """The paper's order of presence patterns for ``n_modalities`` modalities.

    All modalities first, then each single modality, then each pair, each
    triple, ... (each size in :func:`itertools.combinations` order), i.e. every
    non-empty subset once: ``2**M - 1`` patterns.

    Parameters
    ----------
    n_modalities : int
        Number of modalities ``M >= 1``.

    Returns
    -------
    list of tuple of int
        The patterns, each a sorted tuple of modality indices.

    Examples
    --------
    >>> default_patterns(3)     # all, t, a, v, ta, tv, av
    [(0, 1, 2), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    >>> default_patterns(2)     # both, first, second
    [(0, 1), (0,), (1,)]
    """
    m = _check_n(n_modalities, "n_modalities")
    if m < 1:
        raise ValueError("n_modalities must be >= 1")
    pats: list[tuple[int, ...]] = [tuple(range(m))]
    for size in range(1, m):
        pats.extend(itertools.combinations(range(m), size))
    return pats


def _modalities_from_n_patterns(n_patterns: int) -> int:
    """M such that 2**M - 1 == n_patterns, or a ValueError."""
    m = int(n_patterns + 1).bit_length() - 1
    if n_patterns < 1 or 2**m - 1 != n_patterns:
        valid = ", ".join(f"{2**k - 1} (M={k})" for k in range(1, 7))
        raise ValueError(
            f"{n_patterns} pattern probabilities do not match the default patterns of "
            f"any number of modalities: M modalities have 2**M - 1 patterns, i.e. {valid}, ... "
            f"(or pass `patterns` explicitly)")
    return m


def _pattern_matrix(patterns: Any, n_modalities: int | None) -> np.ndarray:
    """Patterns (tuples of indices or a (P, M) bool array) as a (P, M) bool array."""
    if isinstance(patterns, np.ndarray) and patterns.ndim == 2:
        if patterns.dtype != np.bool_:
            if not np.all((patterns == 0) | (patterns == 1)):
                raise ValueError("a pattern array must be boolean (or 0/1)")
            patterns = patterns.astype(bool)
        mat = patterns.copy()
        if n_modalities is not None and mat.shape[1] != n_modalities:
            raise ValueError(f"pattern array has {mat.shape[1]} columns but "
                             f"n_modalities={n_modalities}")
    else:
        pats: list[tuple[int, ...]] = []
        for p in patterns:
            if isinstance(p, (str, bytes)):
                raise TypeError(f"a pattern must be a tuple of modality indices, got {p!r}")
            try:
                idx = tuple(operator.index(v) for v in p)
            except TypeError:
                raise TypeError(f"a pattern must be a tuple of modality indices, "
                                f"got {p!r}") from None
            if len(set(idx)) != len(idx):
                raise ValueError(f"pattern {p!r} repeats a modality")
            if any(v < 0 for v in idx):
                raise ValueError(f"pattern {p!r} has a negative modality index")
            pats.append(idx)
        if not pats:
            raise ValueError("patterns must not be empty")
        max_idx = max((max(p) for p in pats if p), default=-1)
        m = max_idx + 1 if n_modalities is None else n_modalities
        if max_idx >= m:
            raise ValueError(f"pattern index {max_idx} out of range for "
                             f"n_modalities={m}")
        mat = np.zeros((len(pats), m), dtype=bool)
        for k, p in enumerate(pats):
            mat[k, list(p)] = True
    if mat.shape[0] == 0 or mat.shape[1] == 0:
        raise ValueError("patterns must be non-empty, over at least one modality")
    empty = np.flatnonzero(~mat.any(axis=1))
    if empty.size:
        raise ValueError(f"pattern {int(empty[0])} keeps no modality; every pattern "
                         f"must keep at least one")
    if len({row.tobytes() for row in mat}) != mat.shape[0]:
        raise ValueError("patterns must be distinct")
    return mat


# --------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------
def standard_mask(n: int, probs: Sequence[float], *, seed: SeedLike = None,
                  at_least_one: bool = True) -> np.ndarray:
    """Standard protocol: keep modality ``m`` with probability ``probs[m]``.

    Each slot ``(i, m)`` is kept independently with probability ``probs[m]``
    (a draw ``u ~ U[0, 1)`` keeps the slot when ``u < probs[m]``, so a
    probability of 1 always keeps and 0 never does).  This is the paper's
    ``a_b_c`` protocol, e.g. ``70_100_70``.

    Parameters
    ----------
    n : int
        Number of samples (rows), ``n >= 0``.
    probs : sequence of float, length M >= 1
        Keep probability of each modality, each in ``[0, 1]`` (fractions, not
        percentages: use :func:`parse_config` for ``"70_100_70"``).
    seed : None, int or numpy.random.Generator, optional
        Randomness; a Generator is used (and advanced) in place.
    at_least_one : bool, default True
        If True, a row that lost every modality gets exactly one back, chosen
        with probability proportional to ``probs`` (uniformly over all
        modalities when every probability is 0).  This raises the realised keep
        rate of modality ``m`` from ``p_m`` to
        ``p_m + P(row empty) * p_m / sum(p)``; when some ``p_m`` is 1, as in
        the paper, no row is ever empty and nothing changes.  If False, rows
        may keep no modality at all.

    Returns
    -------
    numpy.ndarray of bool, shape (n, M)
        ``True`` where the modality is observed.

    Examples
    --------
    >>> mask = standard_mask(1000, [0.7, 1.0, 0.7], seed=0)
    >>> mask.shape, bool(mask[:, 1].all()), bool(mask.any(axis=1).all())
    ((1000, 3), True, True)
    >>> np.array_equal(mask, standard_mask(1000, [0.7, 1.0, 0.7], seed=0))
    True
    """
    n = _check_n(n)
    p = _as_prob_vector(probs, "probs")
    if np.any((p < 0) | (p > 1)):
        hint = " (percentages? divide by 100 or use parse_config)" if np.any(p > 1) else ""
        raise ValueError(f"probs must be in [0, 1], got {p.tolist()}{hint}")
    rng = _rng(seed)
    m = p.size
    mask = rng.random((n, m)) < p
    if at_least_one:
        empty = np.flatnonzero(~mask.any(axis=1))
        if empty.size:
            total = p.sum()
            w = p / total if total > 0 else np.full(m, 1.0 / m)
            mask[empty, rng.choice(m, size=empty.size, p=w)] = True
    return mask


def complex_mask(n: int, pattern_probs: Sequence[float], *,
                 patterns: Iterable[Sequence[int]] | np.ndarray | None = None,
                 seed: SeedLike = None, n_modalities: int | None = None) -> np.ndarray:
    """Complex protocol: a distribution over presence patterns, exact counts.

    Pattern ``k`` is given to ``c_k`` rows, where the counts ``c_k`` are the
    largest-remainder (Hamilton) rounding of ``n * p_k``: every quota is
    rounded down and the rows left over go one each to the largest fractional
    parts (ties to the lower pattern index).  So the counts sum to ``n``, each
    is within 1 of ``n * p_k``, and when ``n * p_k`` are integers (``n = 100``
    with the paper's percentages) the realised fractions are exactly the
    specification.  The rows then receive their patterns in a seeded random
    order (a permutation), so which rows get which pattern is random but the
    counts are not.

    Parameters
    ----------
    n : int
        Number of samples (rows), ``n >= 0``.
    pattern_probs : sequence of float, length P
        Probability of each pattern: non-negative, summing to 100
        (percentages) or to 1 (fractions), up to a relative 1e-6; anything
        else is an error.  They are normalised to sum exactly to 1.
    patterns : list of tuple of int, or (P, M) bool array, optional
        The presence patterns, each a tuple of the modality indices it keeps
        (or one row of a boolean array).  Each must keep at least one modality
        and all must be distinct.  Default: :func:`default_patterns` for M
        modalities, i.e. all, then each single modality, then each pair, ...
        (for M = 3: all, t, a, v, ta, tv, av), in which case
        ``len(pattern_probs)`` must be ``2**M - 1``.
    seed : None, int or numpy.random.Generator, optional
        Randomness; a Generator is used (and advanced) in place.
    n_modalities : int, optional
        Number of modalities M.  Default: deduced from ``patterns`` (number of
        columns, or largest index + 1) or, without ``patterns``, from
        ``len(pattern_probs) == 2**M - 1``.

    Returns
    -------
    numpy.ndarray of bool, shape (n, M)
        ``True`` where the modality is observed.

    Examples
    --------
    The paper's ``complex_20_20_20_10_10_10_10`` (all, t, a, v, ta, tv, av):

    >>> mask = complex_mask(100, [20, 20, 20, 10, 10, 10, 10], seed=0)
    >>> int((mask.sum(axis=1) == 3).sum())          # exactly 20 complete rows
    20
    >>> int((mask == [True, False, False]).all(axis=1).sum())   # text only
    20

    Explicit patterns, as fractions:

    >>> mask = complex_mask(10, [0.5, 0.5], patterns=[(0, 1), (1,)], seed=1)
    >>> mask.sum(axis=0).tolist()
    [5, 10]
    """
    n = _check_n(n)
    w = _as_prob_vector(pattern_probs, "pattern_probs")
    if n_modalities is not None:
        n_modalities = _check_n(n_modalities, "n_modalities")
        if n_modalities < 1:
            raise ValueError("n_modalities must be >= 1")
    if patterns is None:
        m = _modalities_from_n_patterns(w.size)
        if n_modalities is not None and m != n_modalities:
            raise ValueError(
                f"{w.size} pattern probabilities give the default patterns of {m} "
                f"modalities, but n_modalities={n_modalities} needs "
                f"{2**n_modalities - 1}")
        mat = _pattern_matrix(default_patterns(m), m)
    else:
        mat = _pattern_matrix(patterns, n_modalities)
        if mat.shape[0] != w.size:
            raise ValueError(f"{w.size} pattern probabilities for {mat.shape[0]} patterns")
    w = _normalise_weights(w, "pattern_probs")
    rng = _rng(seed)
    counts = _exact_counts(n, w)
    which = np.repeat(np.arange(mat.shape[0]), counts)
    which = rng.permutation(which)
    return mat[which]


def _calibrated_rate(rate: float, m: int) -> float:
    """The i.i.d. drop rate ``q`` with ``E[missing fraction] = rate`` after
    restoring one modality of each empty row: ``q - q**m / m = rate``."""
    if rate <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(200):  # f(q) = q - q**m/m is increasing on [0, 1]
        mid = 0.5 * (lo + hi)
        if mid - mid**m / m < rate:
            lo = mid
        else:
            hi = mid
    return hi


def missing_rate_mask(n: int, n_modalities: int, rate: float, *,
                      seed: SeedLike = None, exact: bool = True) -> np.ndarray:
    """Uniform missingness at a given rate, every row keeping a modality.

    How it is drawn:

    1. every slot is dropped independently with a *calibrated* probability
       ``q`` (not ``rate`` itself);
    2. every row that lost all its modalities gets one back, chosen uniformly;
    3. with ``exact=True`` (default) the number of missing slots is then set
       to exactly ``round(rate * n * M)`` (nearest integer): surplus missing slots are restored
       at random, or missing ones added at random among slots whose row still
       keeps another modality.

    Step 2 alone would lower the missing fraction from ``q`` to
    ``q - q**M / M`` on average (for M = 2 and ``rate = 0.5``, to 0.375), so
    ``q`` is solved from ``q - q**M / M = rate``; the expected fraction is then
    ``rate`` and step 3 only removes the sampling noise (it moves about
    ``sqrt(n * M)`` slots, not a systematic share).

    As every row keeps at least one of its M modalities, at most ``M - 1`` of
    them can be missing: rates above ``(M - 1) / M`` (1/2 for two modalities,
    2/3 for three; 0 for one) cannot be reached and are an error.  At exactly
    ``(M - 1) / M`` every row keeps exactly one modality.

    Parameters
    ----------
    n : int
        Number of samples (rows), ``n >= 0``.
    n_modalities : int
        Number of modalities ``M >= 1``.
    rate : float
        Wanted fraction of missing slots, ``0 <= rate <= (M - 1) / M`` (a
        relative 1e-9 above it is accepted and clipped, so ``2/3`` works).
    seed : None, int or numpy.random.Generator, optional
        Randomness; a Generator is used (and advanced) in place.
    exact : bool, default True
        Make the realised number of missing slots exactly
        ``round(rate * n * M)`` (see step 3).  If False, it is only ``rate``
        on average.

    Returns
    -------
    numpy.ndarray of bool, shape (n, M)
        ``True`` where the modality is observed.

    Examples
    --------
    >>> mask = missing_rate_mask(1000, 3, 0.5, seed=0)
    >>> float(1 - mask.mean()), bool(mask.any(axis=1).all())
    (0.5, True)
    >>> missing_rate_mask(4, 2, 0.5, seed=0).sum(axis=1).tolist()   # max rate for M=2
    [1, 1, 1, 1]
    """
    n = _check_n(n)
    m = _check_n(n_modalities, "n_modalities")
    if m < 1:
        raise ValueError("n_modalities must be >= 1")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise TypeError(f"rate must be a number, got {rate!r}") from None
    max_rate = (m - 1) / m
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"rate must be in [0, {max_rate:.6g}], got {rate}")
    if rate > max_rate:
        if rate <= max_rate * (1 + 1e-9) and m > 1:
            rate = max_rate
        else:
            raise ValueError(
                f"rate={rate} cannot be reached with {m} modalities while every row keeps "
                f"one: the largest missing rate is (M-1)/M = {max_rate:.6g}")
    rng = _rng(seed)
    q = _calibrated_rate(rate, m)
    mask = rng.random((n, m)) >= q
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        mask[empty, rng.integers(0, m, size=empty.size)] = True
    if exact and n:
        target = min(int(round(rate * n * m)), n * (m - 1))
        missing = n * m - int(mask.sum())
        if missing > target:
            # restore (missing - target) random missing slots: always allowed
            slots = np.flatnonzero(~mask.ravel())
            flat = slots[rng.choice(slots.size, size=missing - target, replace=False)]
            mask[flat // m, flat % m] = True
        elif missing < target:
            # reserve one random present slot per row, drop among the others
            keep_rank = rng.random((n, m))
            keep_rank[~mask] = -1.0
            reserved = np.zeros_like(mask)
            reserved[np.arange(n), keep_rank.argmax(axis=1)] = True
            slots = np.flatnonzero((mask & ~reserved).ravel())
            flat = slots[rng.choice(slots.size, size=target - missing, replace=False)]
            mask[flat // m, flat % m] = False
    return mask


# --------------------------------------------------------------------------
# config strings
# --------------------------------------------------------------------------
_NUMBER = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


def _parse_numbers(body: str, config: str) -> list[float]:
    if not body:
        raise ValueError(f"config {config!r} has no numbers")
    out = []
    for tok in body.split("_"):
        if tok == "":
            raise ValueError(f"config {config!r} has an empty field (doubled or "
                             f"trailing '_')")
        if tok.startswith("-"):
            raise ValueError(f"config {config!r}: negative number {tok!r}")
        if not _NUMBER.match(tok):
            raise ValueError(f"config {config!r}: {tok!r} is not a non-negative number")
        out.append(float(tok))
    return out


def parse_config(config: str, n_modalities: int | None = None) -> dict:
    """Describe one of the paper's missingness configuration strings.

    Accepted forms (case-insensitive, surrounding spaces ignored):

    ``"a_b_c"`` or ``"standard_a_b_c"``
        Standard protocol; one number per modality, each the *percentage*
        (0-100) of samples that keep that modality.  ``"70_100_70"`` keeps
        text 70%, audio 100%, video 70% of the time.  As the numbers are
        percentages, a string whose numbers are all at most 1 and not all
        integers (``"0.7_1_0.7"``) is refused as ambiguous.
    ``"complex_p1_p2_..._pP"``
        Complex protocol; one number per presence pattern in the
        :func:`default_patterns` order (all, then singles, then pairs, ...),
        summing to 100 (percentages) or 1.  M modalities need ``2**M - 1``
        numbers: 3 for M = 2 (``complex_60_20_20``: both, first, second),
        7 for M = 3 (``complex_20_20_20_10_10_10_10``: all, t, a, v, ta, tv, av).

    Parameters
    ----------
    config : str
        The configuration string.
    n_modalities : int, optional
        If given, the string must describe that many modalities.

    Returns
    -------
    dict
        For the standard protocol ``{"kind": "standard", "probs": (...),
        "n_modalities": M}`` with ``probs`` as fractions in [0, 1]; for the
        complex protocol ``{"kind": "complex", "pattern_probs": (...),
        "patterns": (...), "n_modalities": M}`` with ``pattern_probs``
        normalised to sum to 1.  The dict can be passed to :func:`make_mask`.

    Raises
    ------
    ValueError
        Malformed string: unknown prefix, empty or non-numeric field, negative
        number, percentage above 100, complex probabilities not summing to 100
        (or 1), a number of fields that fits no (or not the given) number of
        modalities.

    Examples
    --------
    >>> parse_config("70_100_70")
    {'kind': 'standard', 'probs': (0.7, 1.0, 0.7), 'n_modalities': 3}
    >>> cfg = parse_config("complex_60_20_20")
    >>> cfg["pattern_probs"], cfg["patterns"]
    ((0.6, 0.2, 0.2), ((0, 1), (0,), (1,)))
    """
    if not isinstance(config, str):
        raise TypeError(f"config must be a string, got {type(config).__name__}")
    if n_modalities is not None:
        n_modalities = _check_n(n_modalities, "n_modalities")
        if n_modalities < 1:
            raise ValueError("n_modalities must be >= 1")
    s = config.strip().lower()
    if s.startswith("complex"):
        kind, body = "complex", s[len("complex"):]
    elif s.startswith("standard"):
        kind, body = "standard", s[len("standard"):]
    elif s[:1].isdigit() or s[:1] == ".":
        kind, body = "standard", "_" + s
    elif s[:1] == "-":
        raise ValueError(f"config {config!r}: negative number")
    else:
        raise ValueError(
            f"config {config!r} not understood: expected 'a_b_c', 'standard_a_b_c' or "
            f"'complex_p1_..._pP' with non-negative numbers")
    if not body.startswith("_"):
        raise ValueError(f"config {config!r}: expected '_' after {kind!r}")
    nums = _parse_numbers(body[1:], config)

    if kind == "standard":
        if n_modalities is not None and len(nums) != n_modalities:
            raise ValueError(f"config {config!r} has {len(nums)} keep percentages but "
                             f"n_modalities={n_modalities}")
        if any(v > 100 for v in nums):
            raise ValueError(f"config {config!r}: keep percentages must be in [0, 100]")
        if all(v <= 1 for v in nums) and any(v != int(v) for v in nums):
            raise ValueError(
                f"config {config!r} is ambiguous: standard configs are percentages "
                f"(e.g. '70_100_70'); for fractions call make_mask(n=..., probs=[...])")
        probs = tuple(v / 100.0 for v in nums)
        return {"kind": "standard", "probs": probs, "n_modalities": len(nums)}

    m = _modalities_from_n_patterns(len(nums))
    if n_modalities is not None and m != n_modalities:
        raise ValueError(f"config {config!r} has {len(nums)} pattern percentages, which "
                         f"fit {m} modalities; n_modalities={n_modalities} needs "
                         f"{2**n_modalities - 1}")
    w = _normalise_weights(np.asarray(nums, dtype=np.float64), f"config {config!r}")
    return {"kind": "complex",
            "pattern_probs": tuple(float(x) for x in w),
            "patterns": tuple(default_patterns(m)),
            "n_modalities": m}


_KIND_KEYS = {
    "standard": ("probs", {"probs", "at_least_one", "n_modalities"}),
    "complex": ("pattern_probs", {"pattern_probs", "patterns", "n_modalities"}),
    "missing_rate": ("rate", {"rate", "n_modalities", "exact"}),
}


def make_mask(config: str | Mapping[str, Any] | None = None, n: int | None = None, *,
              seed: SeedLike = None, n_modalities: int | None = None,
              **params: Any) -> np.ndarray:
    """Build a presence mask from a config string, a dict or keyword arguments.

    Parameters
    ----------
    config : str or dict, optional
        A config string understood by :func:`parse_config`
        (``"70_100_70"``, ``"standard_70_100_70"``,
        ``"complex_20_20_20_10_10_10_10"``), or a dict of the parameters below
        (for instance what :func:`parse_config` returns).  May be omitted when
        the parameters are given as keywords.
    n : int
        Number of samples (rows).
    seed : None, int or numpy.random.Generator, optional
        Randomness; a Generator is used (and advanced) in place.
    n_modalities : int, optional
        Number of modalities; checked against the config when given, required
        for ``rate``.
    **params
        The protocol's parameters, which also select it (or give
        ``kind="standard" | "complex" | "missing_rate"``):

        - ``probs`` (and ``at_least_one``): :func:`standard_mask`;
        - ``pattern_probs`` (and ``patterns``): :func:`complex_mask`;
        - ``rate`` (with ``n_modalities``, and ``exact``):
          :func:`missing_rate_mask`.

        With a config, only the parameters it does not set may be added (e.g.
        ``at_least_one``).

    Returns
    -------
    numpy.ndarray of bool, shape (n, M)

    Examples
    --------
    >>> make_mask("70_100_70", 5, seed=0).shape
    (5, 3)
    >>> make_mask(n=100, probs=[0.5, 1, 0.5], seed=0).shape
    (100, 3)
    >>> make_mask("complex_60_20_20", 10, seed=0).sum(axis=1).tolist().count(2)
    6
    >>> int(make_mask(n=10, rate=0.5, n_modalities=2, seed=0).sum())
    10
    """
    if n is None:
        raise TypeError("make_mask() needs n, the number of samples")
    if config is None:
        spec: dict[str, Any] = {}
    elif isinstance(config, str):
        spec = parse_config(config, n_modalities)
    elif isinstance(config, Mapping):
        spec = dict(config)
    else:
        raise TypeError(f"config must be a string or a dict, got {type(config).__name__}")
    both = set(spec) & set(params)
    if both:
        raise ValueError(f"{sorted(both)} given both in the config and as keywords")
    spec.update(params)
    if n_modalities is not None:
        given = spec.get("n_modalities")
        if given is not None and given != n_modalities:
            raise ValueError(f"config describes {given} modalities, n_modalities={n_modalities}")
        spec["n_modalities"] = n_modalities

    kind = spec.pop("kind", None)
    if kind is None:
        found = [k for k, (key, _) in _KIND_KEYS.items() if key in spec]
        if len(found) != 1:
            raise ValueError(
                "give exactly one of probs= (standard), pattern_probs= (complex) or "
                f"rate= (missing_rate), or a config string; got keys {sorted(spec)}")
        kind = found[0]
    if kind not in _KIND_KEYS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(_KIND_KEYS)}")
    key, allowed = _KIND_KEYS[kind]
    unknown = set(spec) - allowed
    if unknown:
        raise TypeError(f"unexpected parameters for the {kind} protocol: {sorted(unknown)}")
    if key not in spec:
        raise ValueError(f"the {kind} protocol needs {key}=")
    m = spec.pop("n_modalities", None)

    if kind == "standard":
        probs = spec["probs"]
        if m is not None and len(probs) != m:
            raise ValueError(f"{len(probs)} probs for n_modalities={m}")
        return standard_mask(n, probs, seed=seed,
                             at_least_one=spec.get("at_least_one", True))
    if kind == "complex":
        return complex_mask(n, spec["pattern_probs"], patterns=spec.get("patterns"),
                            seed=seed, n_modalities=m)
    if m is None:
        raise ValueError("the missing_rate protocol needs n_modalities=")
    return missing_rate_mask(n, m, spec["rate"], seed=seed, exact=spec.get("exact", True))


def mask_stats(mask: np.ndarray, patterns: Iterable[Sequence[int]] | None = None) -> dict:
    """Realised statistics of a presence mask.

    Parameters
    ----------
    mask : array of bool, shape (n, M)
    patterns : list of tuple of int, optional
        Patterns whose realised fractions to report; default
        :func:`default_patterns` (M).

    Returns
    -------
    dict
        ``n``, ``n_modalities``, ``keep_rate`` (per modality), ``missing_rate``
        (over all slots), ``empty_rows`` (rows keeping nothing) and
        ``pattern_fractions`` (fraction of rows with exactly each pattern).

    Examples
    --------
    >>> mask_stats(np.array([[True, True], [True, False]]))["pattern_fractions"]
    {(0, 1): 0.5, (0,): 0.5, (1,): 0.0}
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (n, M), got shape {mask.shape}")
    n, m = mask.shape
    pats = default_patterns(m) if patterns is None else [tuple(p) for p in patterns]
    mat = _pattern_matrix(pats, m)
    fr = {}
    for p, row in zip(pats, mat):
        fr[tuple(p)] = float((mask == row).all(axis=1).mean()) if n else 0.0
    return {
        "n": n,
        "n_modalities": m,
        "keep_rate": mask.mean(axis=0).tolist() if n else [0.0] * m,
        "missing_rate": float(1.0 - mask.mean()) if mask.size else 0.0,
        "empty_rows": int((~mask.any(axis=1)).sum()),
        "pattern_fractions": fr,
    }
