"""Pure-numpy float64 reference implementation of the UL4M4 contract.

This module is the executable reading of ``docs/algorithm.md`` that the
test suite trusts.  It is written for clarity, not speed: loops are explicit and
every summation order is fixed, so that two formulations that are supposed to be
equal (the e/f-table greedy completion and the authors' literal loop) agree bit
for bit, ties included.

Conventions
-----------
* ``Zs`` / ``Xs`` / ``Cs``: lists with one 2-D float64 array per modality
  (rows x d_m).  ``P`` (N x M) and ``H`` (K x M) are boolean presence masks.
* Everything except :func:`stats`, :func:`normalise` and :func:`run_case` works
  in z-space.  Absent values are NaN and are never read.
* One per-modality term is ``||a - b||^2 / d_m`` where the sum of squares is a
  correctly rounded sum (``math.fsum``), as in the golden generator's "exact
  mode".  Terms of a partial distance are accumulated in ascending modality
  order starting from 0.0; a masked-out term contributes nothing (adding 0.0
  is exact), and the total is divided by ``|S|`` (``sum / |S|``, never
  ``(1/|S|) * sum``).  All functions below obey these rules, which is what makes
  structural exact ties reproducible.

Only dependency: numpy.
"""

from __future__ import annotations

import math

import numpy as np

SIGMA_FLOOR = 1e-8
TEMPERATURE_FLOOR = 1e-12

__all__ = [
    "stats",
    "normalise",
    "partial_dist2",
    "dist2_matrix",
    "assign",
    "update",
    "kmeans",
    "kmeanspp",
    "greedy_complete",
    "greedy_complete_literal",
    "soft_complete",
    "run_case",
]


# --------------------------------------------------------------------------
# per-modality terms
# --------------------------------------------------------------------------
def _term(a, b):
    """||a - b||^2 / d for two 1-D vectors (correctly rounded sum of squares)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.shape[0]
    return math.fsum(((a - b) ** 2).tolist()) / d


def _term_table(A, B):
    """(n, k) table of _term(A[r], B[c]); identical, bit for bit, to _term."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    n, d = A.shape
    k = B.shape[0]
    out = np.empty((n, k), dtype=np.float64)
    if n == 0 or k == 0:
        return out
    sq = (A[:, None, :] - B[None, :, :]) ** 2  # NaN where either side absent
    rows = sq.reshape(n * k, d).tolist()
    out.ravel()[:] = [math.fsum(r) / d for r in rows]
    return out


def _m_list(M, *masks):
    return [m for m in range(M) if all(bool(x[m]) for x in masks)]


# --------------------------------------------------------------------------
# 1. normalisation
# --------------------------------------------------------------------------
def stats(Xs, P):
    """Per-modality float64 mean and population std over rows with P[:, m].

    A feature with sigma <= 1e-8 gets sigma = 1.  A modality with no observed
    row cannot be fitted: ValueError.
    """
    P = np.asarray(P, dtype=bool)
    mus, sigmas = [], []
    for m, X in enumerate(Xs):
        rows = np.asarray(X)[P[:, m]].astype(np.float64)
        if rows.shape[0] == 0:
            raise ValueError(f"modality {m} has no observed row: cannot be fitted")
        mu = rows.mean(axis=0)
        sigma = np.sqrt(((rows - mu) ** 2).mean(axis=0))
        sigma = np.where(sigma <= SIGMA_FLOOR, 1.0, sigma)
        mus.append(mu)
        sigmas.append(sigma)
    return mus, sigmas


def normalise(Xs, P, mus, sigmas):
    """z = (x - mu) / sigma on observed rows, NaN on absent rows (never read)."""
    P = np.asarray(P, dtype=bool)
    Zs = []
    for m, X in enumerate(Xs):
        X = np.asarray(X)
        Z = np.full(X.shape, np.nan, dtype=np.float64)
        pm = P[:, m]
        Z[pm] = (X[pm].astype(np.float64) - mus[m]) / sigmas[m]
        Zs.append(Z)
    return Zs


def _to_z(Cs_raw, H, mus, sigmas):
    """Map explicit (raw-space) initial centres to z-space."""
    return normalise(Cs_raw, H, mus, sigmas)


def _to_raw(Zs, mus, sigmas):
    return [Z * sigmas[m] + mus[m] for m, Z in enumerate(Zs)]


# --------------------------------------------------------------------------
# 2. partial distance
# --------------------------------------------------------------------------
def partial_dist2(za_list, A, zb_list, B):
    """Squared partial distance (1/|S|) sum_{m in S} ||a^m - b^m||^2 / d_m.

    ``za_list`` / ``zb_list``: one 1-D vector per modality; ``A`` / ``B``:
    presence vectors.  +inf when the items share no modality.
    """
    M = len(A)
    S = _m_list(M, A, B)
    if not S:
        return math.inf
    acc = 0.0
    for m in S:  # ascending m
        acc = acc + _term(za_list[m], zb_list[m])
    return acc / len(S)


def _e_table(Zs, Cs):
    """e[i, l, m] = ||z_i^m - c_l^m||^2 / d_m (NaN where either is absent)."""
    tabs = [_term_table(Z, C) for Z, C in zip(Zs, Cs)]
    return np.stack(tabs, axis=-1)


def _f_table(Cs):
    """f[j, l, m] = ||c_j^m - c_l^m||^2 / d_m by direct differences.

    The diagonal is exactly 0 where the centre carries m (NaN where absent).
    """
    return _e_table(Cs, Cs)


def _masked_mean(terms, mask):
    """sum over the last axis of terms where mask, ascending order, / count.

    +inf where the mask is empty.  Masked-out entries (possibly NaN) are never
    read into the sum.
    """
    M = terms.shape[-1]
    acc = np.zeros(terms.shape[:-1], dtype=np.float64)
    cnt = np.zeros(terms.shape[:-1], dtype=np.int64)
    for m in range(M):
        mk = mask[..., m]
        acc = acc + np.where(mk, terms[..., m], 0.0)
        cnt = cnt + mk
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.inf)
    return out


def dist2_matrix(Zs, P, Cs, H):
    """(N, K) squared partial distances rows -> centres (+inf: nothing shared)."""
    P = np.asarray(P, dtype=bool)
    H = np.asarray(H, dtype=bool)
    e = _e_table(Zs, Cs)
    shared = P[:, None, :] & H[None, :, :]
    return _masked_mean(e, shared)


# --------------------------------------------------------------------------
# 4. masked k-means
# --------------------------------------------------------------------------
def _assign_from_d2(d2):
    labels = np.argmin(d2, axis=1).astype(np.int64)  # first minimum: lowest j
    labels[~np.isfinite(d2.min(axis=1))] = -1
    return labels


def assign(Zs, P, Cs, H):
    """argmin_j D(z_i, c_j), ties -> lowest j, -1 if +inf to every centre."""
    return _assign_from_d2(dist2_matrix(Zs, P, Cs, H))


def update(Zs, P, labels, Cs, H):
    """Centre update (sec. 4).

    c_j^m = float64 mean of z_i^m over members of j with P[i, m]; a modality no
    member has becomes absent (NaN); a cluster with no member keeps its previous
    centre and presence unchanged.
    """
    P = np.asarray(P, dtype=bool)
    H = np.asarray(H, dtype=bool)
    labels = np.asarray(labels)
    K, M = H.shape
    newC = [np.array(C, dtype=np.float64, copy=True) for C in Cs]
    newH = H.copy()
    for j in range(K):
        members = labels == j
        if not members.any():
            continue  # empty cluster: keep centre and presence
        for m in range(M):
            rows = members & P[:, m]
            if rows.any():
                newC[m][j] = Zs[m][rows].mean(axis=0)
                newH[j, m] = True
            else:
                newC[m][j] = np.nan
                newH[j, m] = False
    return newC, newH


def _centre(Cs, j):
    return [C[j] for C in Cs]


def kmeans(Zs, P, C0s, H0, max_iter, tol):
    """Lloyd loop exactly as docs/algorithm.md section 4 / golden README.

    Centre shift: shift = max_j D(c_old_j, c_new_j), the partial (not squared)
    distance, so modalities a centre gained or lost are ignored.  If an old and
    new centre shared no modality the term would be +inf (never <= tol), but
    that cannot happen: a non-empty cluster's members each share a modality
    with the old centre and the new centre carries every modality any member
    has, and an empty cluster keeps its centre (shift 0).  We nevertheless
    treat a non-shared pair as +inf, which is what the partial distance says;
    the golden vectors (p12: centres gain modality 1 at the first update; p11:
    tol stop) are reproduced with this rule.
    """
    P = np.asarray(P, dtype=bool)
    Cs = [np.array(C, dtype=np.float64, copy=True) for C in C0s]
    H = np.array(H0, dtype=bool, copy=True)
    K = H.shape[0]
    labels = assign(Zs, P, Cs, H)  # not counted
    n_iter = 0
    while n_iter < max_iter:
        oldC, oldH = Cs, H
        Cs, H = update(Zs, P, labels, Cs, H)
        n_iter += 1
        shift = 0.0
        for j in range(K):
            d2 = partial_dist2(_centre(oldC, j), oldH[j], _centre(Cs, j), H[j])
            shift = max(shift, math.sqrt(d2))
        new = assign(Zs, P, Cs, H)
        changed = bool(np.any(new != labels))
        labels = new
        if not changed:
            break
        if shift <= tol:
            break
    d2 = dist2_matrix(Zs, P, Cs, H)
    ok = labels >= 0
    inertia = float(math.fsum(d2[np.nonzero(ok)[0], labels[ok]].tolist()))
    return dict(labels=labels, Cs=Cs, H=H, inertia=inertia, n_iter=n_iter)


# --------------------------------------------------------------------------
# 3. seeding
# --------------------------------------------------------------------------
def kmeanspp(Zs, P, K, rng):
    """k-means++ on the partial distance (sec. 3). Returns (Cs, H) in z-space.

    Eligible rows observe at least one modality.  Rows at +inf from every chosen
    centre are taken first, uniformly among themselves; otherwise sampling is
    proportional to D^2 to the nearest chosen centre; if every weight is 0, the
    next centre is uniform among eligible rows not yet chosen.  A centre
    inherits the presence set of its row.
    """
    P = np.asarray(P, dtype=bool)
    eligible = np.nonzero(P.any(axis=1))[0]
    if K < 1:
        raise ValueError("K must be >= 1")
    if K > eligible.size:
        raise ValueError(
            f"K={K} is larger than the number of rows with an observed modality "
            f"({eligible.size})"
        )
    Ze = [Z[eligible] for Z in Zs]
    Pe = P[eligible]
    chosen = [int(rng.integers(eligible.size))]
    nearest = dist2_matrix(Ze, Pe, _rows(Ze, [chosen[0]]), Pe[[chosen[0]]])[:, 0]
    while len(chosen) < K:
        inf_rows = np.nonzero(np.isinf(nearest))[0]
        if inf_rows.size:
            nxt = int(inf_rows[rng.integers(inf_rows.size)])
        else:
            w = nearest.copy()
            total = w.sum()
            if total > 0:
                nxt = int(rng.choice(w.size, p=w / total))
            else:
                rest = np.setdiff1d(np.arange(eligible.size), chosen)
                nxt = int(rest[rng.integers(rest.size)])
        chosen.append(nxt)
        d_new = dist2_matrix(Ze, Pe, _rows(Ze, [nxt]), Pe[[nxt]])[:, 0]
        nearest = np.minimum(nearest, d_new)
    Cs = [Z[chosen].copy() for Z in Ze]
    H = Pe[chosen].copy()
    for m, C in enumerate(Cs):
        C[~H[:, m]] = np.nan
    return Cs, H


def _rows(Zs, idx):
    return [Z[idx] for Z in Zs]


# --------------------------------------------------------------------------
# 5. hard (greedy) completion
# --------------------------------------------------------------------------
def _empty_outputs(Zs, P):
    P = np.asarray(P, dtype=bool)
    Zout = [np.where(P[:, m][:, None], Z, 0.0) for m, Z in enumerate(Zs)]
    return Zout


def greedy_complete(Zs, P, Cs, H):
    """Sec. 5 with anchored pairs, via the e/f tables.

    For row i (observed A, missing Mi), candidate j's presence is
    Q_j = A | (Mi & H_j); for an anchored centre l (H_l & A non-empty)
        D(cand_j, c_l)^2 = [ sum_{m in A & H_l} e[i,l,m]
                             + sum_{m in Mi & H_j & H_l} f[j,l,m] ] / |Q_j & H_l|
    (ascending m), non-anchored l give +inf; score_j = min_l D.  Candidates are
    visited in ascending score (stable: ties -> lowest j), +inf scores never
    fill; still-missing modalities are filled with z = 0 and reported unfilled.

    Returns (Zout_list, imputed, unfilled, scores) in z-space; ``scores`` is NaN
    for rows with nothing missing or nothing observed.
    """
    P = np.asarray(P, dtype=bool)
    H = np.asarray(H, dtype=bool)
    N, M = P.shape
    K = H.shape[0]
    Zout = _empty_outputs(Zs, P)
    imputed = np.zeros((N, M), dtype=bool)
    unfilled = np.zeros((N, M), dtype=bool)
    scores = np.full((N, K), np.nan)
    e = _e_table(Zs, Cs)  # N x K x M
    f = _f_table(Cs)  # K x K x M
    for i in range(N):
        A = P[i]
        Mi = ~A
        if not Mi.any():
            continue
        if not A.any():
            unfilled[i] = True  # nothing to match on: training mean, unfilled
            continue
        anchored = (H & A).any(axis=1)  # over l
        # terms[j, l, m]: e for observed m, f for imputed m
        terms = np.where(A[None, None, :], e[i][None, :, :], f)
        Q = A[None, :] | (Mi[None, :] & H)  # K x M (candidate presence)
        mask = Q[:, None, :] & H[None, :, :]  # j x l x m
        d2 = _masked_mean(terms, mask)
        d2[:, ~anchored] = np.inf
        score = np.sqrt(d2.min(axis=1))
        scores[i] = score
        order = np.argsort(score, kind="stable")
        missing = Mi.copy()
        for j in order:
            if not np.isfinite(score[j]) or not missing.any():
                break
            for m in range(M):
                if missing[m] and H[j, m]:
                    Zout[m][i] = Cs[m][j]
                    imputed[i, m] = True
                    missing[m] = False
        unfilled[i] = missing  # Zout already 0 there
    return Zout, imputed, unfilled, scores


def greedy_complete_literal(Zs, P, Cs, H):
    """The authors' loop with anchored pairs, computed from the vectors.

    Per row: build every candidate (observed values + c_j^m for missing m that
    centre j carries); the value of pair (j, l) is D(candidate_j, c_l) by
    :func:`partial_dist2`, +inf when H_l shares nothing with the observed set.
    Repeat: pick the globally best remaining pair (ties: lowest j, then lowest
    l), stop if it is +inf or nothing is missing, remove candidate j, copy every
    still-missing modality it carries.  Same return value as greedy_complete
    (``scores`` = min over l of the pair values).
    """
    P = np.asarray(P, dtype=bool)
    H = np.asarray(H, dtype=bool)
    N, M = P.shape
    K = H.shape[0]
    Zout = _empty_outputs(Zs, P)
    imputed = np.zeros((N, M), dtype=bool)
    unfilled = np.zeros((N, M), dtype=bool)
    scores = np.full((N, K), np.nan)
    for i in range(N):
        A = P[i]
        if A.all():
            continue
        if not A.any():
            unfilled[i] = True
            continue
        cands = []
        for j in range(K):
            vec = [Zs[m][i] if A[m] else Cs[m][j] for m in range(M)]
            pres = A | (~A & H[j])
            cands.append((vec, pres))
        pair = np.full((K, K), np.inf)
        for j, (vec, pres) in enumerate(cands):
            for l in range(K):
                if not (H[l] & A).any():
                    continue  # not anchored: +inf
                pair[j, l] = math.sqrt(partial_dist2(vec, pres, _centre(Cs, l), H[l]))
        scores[i] = pair.min(axis=1)
        missing = ~A
        alive = np.ones(K, dtype=bool)
        while missing.any() and alive.any():
            masked = np.where(alive[:, None], pair, np.inf)
            flat = int(np.argmin(masked))  # row-major: lowest j, then lowest l
            j = flat // K
            if not np.isfinite(masked.flat[flat]):
                break
            alive[j] = False
            vec, pres = cands[j]
            for m in range(M):
                if missing[m] and H[j, m]:
                    Zout[m][i] = vec[m]
                    imputed[i, m] = True
                    missing[m] = False
        unfilled[i] = missing
    return Zout, imputed, unfilled, scores


# --------------------------------------------------------------------------
# 5b. soft completion
# --------------------------------------------------------------------------
def soft_complete(Zs, P, Cs, H, temperature_scale=1.0, temperature=None):
    """Sec. 5b.  Returns (Zout_list, imputed, unfilled, T) in z-space.

    D_A(i, j)^2 = partial distance^2 over A_i & H_j (+inf if empty);
    T_i = temperature_scale * median of the finite D_A^2 (numpy median: mean of
    the two middle values for an even count), floored at 1e-12 after scaling;
    an explicit ``temperature`` overrides it (no floor).  T is NaN for rows with
    nothing missing, nothing observed, or no finite D_A.
    """
    if temperature is not None and not temperature > 0:
        raise ValueError("temperature must be > 0")
    P = np.asarray(P, dtype=bool)
    H = np.asarray(H, dtype=bool)
    N, M = P.shape
    Zout = _empty_outputs(Zs, P)
    imputed = np.zeros((N, M), dtype=bool)
    unfilled = np.zeros((N, M), dtype=bool)
    T = np.full(N, np.nan)
    dA2 = dist2_matrix(Zs, P, Cs, H)  # over A_i & H_j: exactly D_A^2
    for i in range(N):
        A = P[i]
        if A.all():
            continue
        if not A.any():
            unfilled[i] = True
            continue
        d = dA2[i]
        fin = np.isfinite(d)
        if not fin.any():
            unfilled[i] = ~A
            continue
        if temperature is None:
            Ti = max(temperature_scale * float(np.median(d[fin])), TEMPERATURE_FLOOR)
        else:
            Ti = float(temperature)
        T[i] = Ti
        for m in range(M):
            if A[m]:
                continue
            J = np.nonzero(H[:, m] & fin)[0]
            if J.size == 0:
                unfilled[i, m] = True
                continue
            dj = d[J]
            w = np.exp(-(dj - dj.min()) / Ti)
            w = w / w.sum()
            acc = np.zeros(Cs[m].shape[1])
            for wj, j in zip(w, J):  # ascending j
                acc = acc + wj * Cs[m][j]
            Zout[m][i] = acc
            imputed[i, m] = True
    return Zout, imputed, unfilled, T


# --------------------------------------------------------------------------
# golden-case driver
# --------------------------------------------------------------------------
def _raw_out(Xs, P, Zout, mus, sigmas):
    """Raw output: observed slots copied bit for bit, others z * sigma + mu."""
    P = np.asarray(P, dtype=bool)
    out = []
    for m, X in enumerate(Xs):
        R = Zout[m] * sigmas[m] + mus[m]
        pm = P[:, m]
        R[pm] = np.asarray(X)[pm]
        out.append(R)
    return out


def _check_rows(P, empty_rows, what):
    if empty_rows not in ("error", "mean"):
        raise ValueError("empty_rows must be 'error' or 'mean'")
    if empty_rows == "error" and not np.asarray(P, dtype=bool).any(axis=1).all():
        raise ValueError(f"{what} contains rows with no observed modality")


def _complete_all(Xs, P, Cs, H, mus, sigmas, scales, prefix_x, prefix_z, key):
    """Hard + soft completions of one row set, keyed as in the golden files.

    key(name) maps a golden base name ('imputed', 'scores', 'T_soft', ...) to
    the train or test spelling.
    """
    out = {}
    Zs = normalise(Xs, P, mus, sigmas)
    M = len(Xs)
    Zh, imp, unf, sc = greedy_complete(Zs, P, Cs, H)
    Xh = _raw_out(Xs, P, Zh, mus, sigmas)
    for m in range(M):
        out[f"{prefix_x}_{m}"] = Xh[m]
        out[f"{prefix_z}_{m}"] = Zh[m]
    out[key("imputed")] = imp
    out[key("unfilled")] = unf
    out[key("scores")] = sc
    for tag, scale in scales.items():
        Zsft, imp_s, unf_s, T = soft_complete(Zs, P, Cs, H, temperature_scale=scale)
        Xsft = _raw_out(Xs, P, Zsft, mus, sigmas)
        for m in range(M):
            out[f"{prefix_x}_{tag}_{m}"] = Xsft[m]
            out[f"{prefix_z}_{tag}_{m}"] = Zsft[m]
        out[key(f"imputed_{tag}")] = imp_s
        out[key(f"unfilled_{tag}")] = unf_s
        out[key(f"T_{tag}")] = T
    return out


def run_case(f):
    """Run one golden case (a loaded npz or a dict of its arrays).

    Returns a dict with the golden key names: mu_m, sigma_m, init_Cz_m, C_m,
    C_raw_m, H, labels, inertia, n_iter; hard Xout_m, Zout_m, imputed,
    unfilled, scores; soft/soft16 Xout_{tag}_m, Zout_{tag}_m, imputed_{tag},
    unfilled_{tag}, T_{tag}; and, where Ptest exists, test_labels and the
    test_* / Xtest_out_* / Ztest_out_* counterparts computed with the training
    mu, sigma and centres only.
    """
    M = int(f["M"])
    K = int(f["K"])
    Xs = [np.asarray(f[f"X_{m}"]) for m in range(M)]
    P = np.asarray(f["P"], dtype=bool)
    empty_rows = str(f["empty_rows"]) if "empty_rows" in f else "error"
    _check_rows(P, empty_rows, "training data")
    H0 = np.asarray(f["H0"], dtype=bool)
    if H0.shape[0] != K or not H0.any(axis=1).all():
        raise ValueError("every initial centre needs at least one modality")

    mus, sigmas = stats(Xs, P)
    Zs = normalise(Xs, P, mus, sigmas)
    C0 = _to_z([np.asarray(f[f"init_C_{m}"]) for m in range(M)], H0, mus, sigmas)
    res = kmeans(Zs, P, C0, H0, int(f["max_iter"]), float(f["tol"]))
    Cs, H = res["Cs"], res["H"]

    out = {}
    for m in range(M):
        out[f"mu_{m}"] = mus[m]
        out[f"sigma_{m}"] = sigmas[m]
        out[f"init_Cz_{m}"] = C0[m]
        out[f"C_{m}"] = Cs[m]
        out[f"C_raw_{m}"] = Cs[m] * sigmas[m] + mus[m]
    out["H"] = H
    out["labels"] = res["labels"]
    out["inertia"] = res["inertia"]
    out["n_iter"] = res["n_iter"]

    scales = {
        "soft": float(f["soft_temperature_scale"]),
        "soft16": float(f["soft16_temperature_scale"]),
    }
    out.update(
        _complete_all(Xs, P, Cs, H, mus, sigmas, scales, "Xout", "Zout", lambda k: k)
    )

    if "Ptest" in f:
        Pt = np.asarray(f["Ptest"], dtype=bool)
        _check_rows(Pt, empty_rows, "new data")
        Xt = [np.asarray(f[f"Xtest_{m}"]) for m in range(M)]
        Zt = normalise(Xt, Pt, mus, sigmas)
        out["test_labels"] = assign(Zt, Pt, Cs, H)
        out.update(
            _complete_all(
                Xt, Pt, Cs, H, mus, sigmas, scales, "Xtest_out", "Ztest_out",
                lambda k: "test_" + k,
            )
        )
    return out
