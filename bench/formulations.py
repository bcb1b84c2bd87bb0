"""The same masked Lloyd iteration written the ways a user would otherwise write it.

Each class takes the data (``Xs``: one (N, d_m) array per modality, ``P``: (N, M) bool
presence), initial centres (``C``: one (K, d_m) array per modality, ``H``: (K, M) bool) and
runs docs/algorithm.md section 4 (the masked k-means loop) without normalisation (which is a
one-off cost before the loop; pass z-scored data to compare labels with ul4m4):

* ``__init__`` does the one-off work (row norms, tensors, the initial assignment: the
  "not counted" assignment of the contract) and is not timed;
* ``iterate()`` is one Lloyd iteration, centre update then assignment pass, exactly what
  ul4m4 reports in ``history_[i]['seconds']``; it returns the new labels (-1: the row
  shares no modality with any centre).

Formulations:

``NumpyGemm``      the competent numpy formulation: per modality ``X_m @ C_m.T`` expanded as
                   ||x||^2 - 2 x.c + ||c||^2 (row norms computed once), masked combine,
                   argmin, masked means with a sparse one-hot product (one pass over X).
``TorchGemm``      the same in PyTorch (``torch.addmm``, ``index_add_``): numpy on the CPU, or
                   torch tensors on their own device (bench/cuda_bench.py runs it on a GPU).
``AuthorsBroadcast`` the authors' scripts: ``((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)``
                   over [rows, K, d] per modality with presence masks, a per-cluster loop of
                   boolean-mask means for the update.
``PerPairLoop``    a Python loop over (row, centre) pairs, one numpy call per modality term.

The last two are meant to be run on a subset of rows and extrapolated (``rows=``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["NumpyGemm", "TorchGemm", "AuthorsBroadcast", "PerPairLoop", "FORMULATIONS"]


def _labels_from(num, cnt):
    """Squared partial distances from masked sums ``num`` and shared counts ``cnt``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d2 = np.where(cnt > 0, num / np.maximum(cnt, 1), np.inf)
    labels = d2.argmin(axis=1).astype(np.int64)
    labels[~np.isfinite(d2[np.arange(d2.shape[0]), labels])] = -1
    return labels


def _loop_update(Xs, P, labels, C, H):
    """The authors' update: per cluster and modality, the mean of the members that have it."""
    K, M = H.shape
    C = [c.copy() for c in C]
    H = H.copy()
    for j in range(K):
        members = labels == j
        if not members.any():
            continue  # empty cluster keeps its centre
        for m in range(M):
            rows = members & P[:, m]
            if rows.any():
                C[m][j] = Xs[m][rows].mean(axis=0)
                H[j, m] = True
            else:
                H[j, m] = False
    return C, H


class NumpyGemm:
    """Competent numpy: GEMM expansion per modality, masked combine, argmin, sparse masked means."""

    name = "numpy GEMM (competent)"

    def __init__(self, Xs, P, C, H, rows=None):
        try:
            import scipy.sparse as sp
        except ImportError:  # np.add.at instead (slower)
            sp = None
        self._sp = sp
        if rows is not None:
            Xs, P = [X[rows] for X in Xs], P[rows]
        self.Xs, self.P = Xs, np.asarray(P, bool)
        self.dt = Xs[0].dtype
        self.C = [np.ascontiguousarray(c, dtype=self.dt) for c in C]
        self.H = np.asarray(H, bool).copy()
        self.xn = [np.einsum("ij,ij->i", X, X) for X in Xs]  # once: the data do not change
        self.Pf = self.P.astype(self.dt)
        self.labels = self.assign()

    def assign(self):
        N, K = self.P.shape[0], self.H.shape[0]
        num = np.zeros((N, K), self.dt)
        cnt = self.Pf @ self.H.T.astype(self.dt)  # shared modalities per (row, centre)
        for m, (X, c) in enumerate(zip(self.Xs, self.C)):
            d = X.shape[1]
            cn = np.einsum("ij,ij->i", c, c)
            g = X @ c.T
            g *= -2.0
            g += self.xn[m][:, None]
            g += cn[None, :]
            np.maximum(g, 0, out=g)
            g *= 1.0 / d
            num += np.where(self.P[:, m, None] & self.H[None, :, m], g, 0)
        return _labels_from(num, cnt)

    def update(self):
        K, M = self.H.shape
        lab = self.labels
        H = self.H.copy()
        C = [c.copy() for c in self.C]
        nonempty = np.bincount(lab[lab >= 0], minlength=K) > 0
        for m, X in enumerate(self.Xs):
            w = (lab >= 0) & self.P[:, m]
            idx = np.flatnonzero(w)
            if self._sp is not None:
                S = self._sp.csr_matrix((np.ones(idx.size, self.dt), (lab[idx], idx)), shape=(K, X.shape[0]))
                sums = np.asarray(S @ X)
            else:
                sums = np.zeros((K, X.shape[1]), self.dt)
                np.add.at(sums, lab[idx], X[idx])
            cnt = np.bincount(lab[idx], minlength=K)
            has = cnt > 0
            C[m][has] = sums[has] / cnt[has, None]
            H[nonempty, m] = has[nonempty]
        self.C, self.H = C, H

    def iterate(self):
        self.update()
        self.labels = self.assign()
        return self.labels


class TorchGemm:
    """PyTorch on the CPU: the GEMM formulation with torch ops (float32 throughout)."""

    name = "PyTorch CPU (GEMM)"

    def __init__(self, Xs, P, C, H, rows=None):
        import torch

        self.torch = torch
        if rows is not None:
            Xs, P = [X[rows] for X in Xs], P[rows]

        def tensor(a):  # numpy in, or torch tensors already on their device (kept there)
            return a if torch.is_tensor(a) else torch.from_numpy(np.ascontiguousarray(a))

        self.Xs = [tensor(X).contiguous() for X in Xs]
        self.P = tensor(P).bool().clone()
        dt = self.Xs[0].dtype
        self.C = [tensor(c).to(dt) for c in C]
        self.H = tensor(H).bool().clone()
        self.xn = [(X * X).sum(1) for X in self.Xs]
        self.Pf = self.P.to(dt)
        self.labels = self.assign()

    def assign(self):
        t = self.torch
        dt = self.Xs[0].dtype
        cnt = self.Pf @ self.H.T.to(dt)
        num = t.zeros_like(cnt)
        for m, (X, c) in enumerate(zip(self.Xs, self.C)):
            d = X.shape[1]
            g = X @ c.T
            g.mul_(-2.0).add_(self.xn[m][:, None]).add_((c * c).sum(1)[None, :]).clamp_(min=0).mul_(1.0 / d)
            g.mul_(self.Pf[:, m, None] * self.H[None, :, m].to(dt))  # masked out: exactly 0 (g is finite)
            num += g
        d2 = t.where(cnt > 0, num / cnt.clamp(min=1), t.full((), float("inf"), dtype=dt))
        best, labels = d2.min(1)
        labels[t.isinf(best)] = -1
        return labels

    def update(self):
        t = self.torch
        K, M = self.H.shape
        lab = self.labels
        ok = lab >= 0
        nonempty = t.bincount(lab[ok], minlength=K) > 0
        H = self.H.clone()
        C = []
        for m, X in enumerate(self.Xs):
            idx = t.nonzero(ok & self.P[:, m]).squeeze(1)
            sums = t.zeros((K, X.shape[1]), dtype=X.dtype, device=X.device).index_add_(0, lab[idx], X[idx])
            cnt = t.bincount(lab[idx], minlength=K)
            has = cnt > 0
            c = self.C[m].clone()
            c[has] = sums[has] / cnt[has, None].to(X.dtype)
            C.append(c)
            H[nonempty, m] = has[nonempty]
        self.C, self.H = C, H

    def iterate(self):
        self.update()
        self.labels = self.assign()
        return self.labels.numpy()


class AuthorsBroadcast:
    """The authors' scripts: a numpy broadcast of (x - c)^2 over [rows, K, d] with masks."""

    name = "authors' numpy broadcast"

    def __init__(self, Xs, P, C, H, rows=None, chunk=256):
        if rows is not None:
            Xs, P = [X[rows] for X in Xs], P[rows]
        self.Xs, self.P = Xs, np.asarray(P, bool)
        self.C = [np.array(c, dtype=Xs[0].dtype) for c in C]
        self.H = np.asarray(H, bool).copy()
        self.chunk = chunk  # rows per broadcast, to bound the [rows, K, d] temporary
        self.labels = self.assign()

    def assign(self):
        N, K, M = self.P.shape[0], self.H.shape[0], self.H.shape[1]
        labels = np.empty(N, np.int64)
        for s in range(0, N, self.chunk):
            p = self.P[s:s + self.chunk]
            shared = p[:, None, :] & self.H[None, :, :]                     # [rows, K, M]
            E = np.zeros(shared.shape, dtype=np.float64)
            for m in range(M):
                x = self.Xs[m][s:s + self.chunk]
                E[:, :, m] = ((x[:, None, :] - self.C[m][None, :, :]) ** 2).sum(-1) / x.shape[1]
            num = np.where(shared, E, 0.0).sum(-1)
            labels[s:s + self.chunk] = _labels_from(num, shared.sum(-1))
        return labels

    def iterate(self):
        self.C, self.H = _loop_update(self.Xs, self.P, self.labels, self.C, self.H)
        self.labels = self.assign()
        return self.labels


class PerPairLoop:
    """A Python loop over (row, centre) pairs, one numpy call per modality term."""

    name = "per-pair Python loop"

    def __init__(self, Xs, P, C, H, rows=None):
        if rows is not None:
            Xs, P = [X[rows] for X in Xs], P[rows]
        self.Xs, self.P = Xs, np.asarray(P, bool)
        self.C = [np.array(c, dtype=Xs[0].dtype) for c in C]
        self.H = np.asarray(H, bool).copy()
        self.labels = self.assign()

    def assign(self):
        N, (K, M) = self.P.shape[0], self.H.shape
        labels = np.full(N, -1, np.int64)
        for i in range(N):
            best = np.inf
            for j in range(K):
                acc, cnt = 0.0, 0
                for m in range(M):
                    if self.P[i, m] and self.H[j, m]:
                        diff = self.Xs[m][i] - self.C[m][j]
                        acc += float(np.dot(diff, diff)) / diff.shape[0]
                        cnt += 1
                if cnt and acc / cnt < best:
                    best, labels[i] = acc / cnt, j
        return labels

    def iterate(self):
        self.C, self.H = _loop_update(self.Xs, self.P, self.labels, self.C, self.H)
        self.labels = self.assign()
        return self.labels


FORMULATIONS = {"numpy_gemm": NumpyGemm, "torch": TorchGemm, "broadcast": AuthorsBroadcast, "loop": PerPairLoop}
