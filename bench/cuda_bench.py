"""The CUDA path against a straightforward PyTorch formulation and the matmul floor (issue 5).

    python bench/cuda_bench.py --json out.json           # on a GPU: N = 1 000 000, K = 64 and 256
    python bench/cuda_bench.py --device cpu --n 20000 --k 16 --check   # the formulations checked

Data: ``--n`` rows, three float32 modalities of widths 768 / 1024 / 768 with cluster
structure, each slot missing with probability 0.5 (rows that lose every modality keep one),
generated directly on the device (missing slots hold finite garbage; the (N, M) mask says
what is present). Initial centres: ``K`` random rows (explicit init, the same for every
contender). For each K, in one run:

* **ul4m4**: ``UL4M4Imputer(K, init=..., max_iter=--iters, tol=0, device=...)`` on the
  device tensors: median seconds per Lloyd iteration (``history_``), then completion
  (``transform``, greedy and soft) of all N rows: rows per second (device synchronised).
* **(a) PyTorch**: the same iteration written the straightforward way in PyTorch on the same
  device (``bench/formulations.py`` ``TorchGemm``: per-modality matmul expansion, masks,
  argmin, scatter means with ``index_add_``), on the data z-scored once with ul4m4's
  statistics (not timed), and greedy completion written the same way (e and f tables,
  every (candidate, centre) pair as a (rows, K, K) tensor, argmin per missing slot).
* **(b) the floor**: ``torch.matmul`` of the same dense core, ``X_m @ C_m.T`` for every
  modality over all N rows (and, for reference, over the present rows only).

``--check`` compares (a) with ul4m4 (labels after the iterations, completed values) so the
formulation is known to compute the same thing; on a GPU it also compares ul4m4's CUDA
labels with its CPU labels on the first rows.

Targets of issue 5: ul4m4 at least 3 x faster than (a) per Lloyd iteration and at most
1.5 x (b).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

DIMS = (768, 1024, 768)


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, repeat=3):
    out, best = None, []
    for _ in range(repeat):
        sync(dev)
        t0 = time.perf_counter()
        out = fn()
        sync(dev)
        best.append(time.perf_counter() - t0)
    return out, best


def make_data(n, dims, dev, seed=0, n_true=48):
    import torch

    g = torch.Generator(device=dev).manual_seed(seed)
    lab = torch.randint(0, n_true, (n,), device=dev, generator=g)
    Xs = []
    for d in dims:
        cent = torch.randn(n_true, d, device=dev, generator=g) * 2.0
        X = cent[lab]
        X += torch.randn(n, d, device=dev, generator=g)
        Xs.append(X)
        del cent
    P = torch.rand(n, len(dims), device=dev, generator=g) < 0.5
    empty = ~P.any(1)
    P[empty, torch.randint(0, len(dims), (int(empty.sum()),), device=dev, generator=g)] = True
    return Xs, P


# ---------------------------------------------------------------------------- (a) greedy in torch
class TorchGreedy:
    """docs/algorithm.md section 5 written the straightforward way in PyTorch: per row chunk the e table by
    the matmul expansion, the f table (K x K x M, direct differences) once, every
    (candidate j, centre l) pair's D^2 as a (rows, K, K) tensor, the anchored-pairs rule,
    score_j = min_l, and each missing slot filled from the lowest-scoring carrier."""

    def __init__(self, C, H, mu, sigma, rows_per_chunk=None):
        import torch

        self.t = torch
        self.C = [c.float() for c in C]          # z-space, (K, d_m), 0 where absent
        self.H = H.bool()
        self.K, self.M = self.H.shape
        self.mu = [m.float() for m in mu]
        self.sigma = [s.float() for s in sigma]
        Hf = self.H.float()
        f = torch.zeros(self.K, self.K, self.M, device=self.H.device)
        for m, c in enumerate(self.C):
            for j0 in range(0, self.K, 16):  # direct differences: exact zero diagonal
                f[j0:j0 + 16, :, m] = ((c[j0:j0 + 16, None, :] - c[None, :, :]) ** 2).sum(-1) / c.shape[1]
        HH = Hf[:, None, :] * Hf[None, :, :]   # [j, l, m]
        self.HHf = (HH * f).reshape(self.K * self.K, self.M)
        self.HH = HH.reshape(self.K * self.K, self.M)
        self.cn = [(c * c).sum(1) for c in self.C]
        self.chunk = rows_per_chunk or max(256, int((1 << 30) // (self.K * self.K * 4 * 3)))

    def __call__(self, Xs, P):
        t = self.t
        N = P.shape[0]
        outs = [X.clone() for X in Xs]
        imputed = t.zeros_like(P)
        unfilled = t.zeros_like(P)
        Hf = self.H.float()
        for r0 in range(0, N, self.chunk):
            r1 = min(N, r0 + self.chunk)
            A = P[r0:r1]
            Af = A.float()
            Mi = (~A).float()
            E1 = t.zeros(r1 - r0, self.K, device=P.device)
            c1 = Af @ Hf.T                                   # |A & H_l|
            for m, X in enumerate(Xs):
                z = (X[r0:r1] - self.mu[m]) / self.sigma[m]
                e = (z * z).sum(1)[:, None] - 2.0 * (z @ self.C[m].T) + self.cn[m][None, :]
                e = e.clamp_(min=0) / X.shape[1]
                E1 += t.where(A[:, m, None] & self.H[None, :, m], e, t.zeros((), device=e.device))
            n = r1 - r0
            num = (Mi @ self.HHf.T).view(n, self.K, self.K) + E1[:, None, :]
            den = (Mi @ self.HH.T).view(n, self.K, self.K) + c1[:, None, :]
            d2 = t.where((c1 > 0)[:, None, :], num / den.clamp(min=1), t.full((), float("inf"), device=P.device))
            score = d2.min(2).values                         # (rows, K candidates)
            for m in range(self.M):
                miss = ~A[:, m]
                s = t.where(self.H[None, :, m], score, t.full((), float("inf"), device=P.device))
                best, j = s.min(1)                          # ties: the lowest j
                ok = miss & t.isfinite(best)
                fill = self.C[m][j] * self.sigma[m] + self.mu[m]
                fill = t.where(ok[:, None], fill, self.mu[m].expand_as(fill))
                o = outs[m][r0:r1]
                o[miss] = fill[miss].to(o.dtype)
                imputed[r0:r1, m] = ok
                unfilled[r0:r1, m] = miss & ~ok
        return outs, imputed, unfilled


# ---------------------------------------------------------------------------- one K
def bench_k(Xs, P, K, iters, dev, check, repeat):
    import torch

    import ul4m4
    from bench.formulations import TorchGemm

    N, M = P.shape
    res = {"K": K}
    g = torch.Generator(device="cpu").manual_seed(K)
    idx = torch.randperm(N, generator=g)[:K].to(dev)
    init = ([X[idx].double().cpu().numpy() for X in Xs], P[idx].cpu().numpy())
    device = "cuda" if dev.type == "cuda" else "cpu"

    # ul4m4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = ul4m4.UL4M4Imputer(K, init=init, max_iter=iters, tol=0.0, device=device)
        (_, fit_s) = timed(lambda: imp.fit(Xs, mask=P), dev, repeat=1)
    secs = [h["seconds"] for h in imp.history_]
    res["ul4m4_fit_seconds"] = fit_s[0]
    res["ul4m4_iter_seconds"] = secs
    res["ul4m4_iter_median"] = float(np.median(secs))
    res["n_iter"] = imp.n_iter_
    for comp in ("greedy", "soft"):
        out, ts = timed(lambda: imp.transform(Xs, mask=P, completion=comp, return_masks=True), dev, repeat)
        res[f"ul4m4_{comp}_seconds"] = ts
        res[f"ul4m4_{comp}_rows_per_s"] = N / min(ts)
        if comp == "greedy":
            ul_out = out
        del out

    # (a) PyTorch: z-scored once with ul4m4's statistics (not timed)
    mu = [torch.as_tensor(m, device=dev, dtype=torch.float32) for m in imp.mean_]
    sg = [torch.as_tensor(s, device=dev, dtype=torch.float32) for s in imp.scale_]
    Z = [((X - m) / s).contiguous() for X, m, s in zip(Xs, mu, sg)]
    zC = [((torch.as_tensor(c, device=dev).float() - m) / s) for c, m, s in zip(init[0], mu, sg)]
    H0 = torch.as_tensor(init[1], device=dev)
    zC = [torch.where(H0[:, m, None], c, torch.zeros((), device=dev)) for m, c in enumerate(zC)]
    tg = TorchGemm(Z, P, zC, H0)  # the initial assignment (not timed)
    t_iter = []
    for _ in range(iters):
        sync(dev)
        t0 = time.perf_counter()
        tg.update()
        tg.labels = tg.assign()
        sync(dev)
        t_iter.append(time.perf_counter() - t0)
    res["torch_iter_seconds"] = t_iter
    res["torch_iter_median"] = float(np.median(t_iter))
    if check:
        a = np.asarray(imp.labels_.cpu() if hasattr(imp.labels_, "cpu") else imp.labels_)
        b = tg.labels.cpu().numpy()
        res["labels_agree_torch"] = float(np.mean(a == b))
    # (a) greedy completion with the fitted centres
    zCf = [torch.as_tensor(np.nan_to_num(c), device=dev).float() for c in imp.cluster_centers_]  # z-space
    tgr = TorchGreedy(zCf, torch.as_tensor(np.asarray(imp.center_mask_), device=dev), mu, sg)
    got, ts = timed(lambda: tgr(Xs, P), dev, repeat)
    res["torch_greedy_seconds"] = ts
    res["torch_greedy_rows_per_s"] = N / min(ts)
    if check:
        (uo, uim, uun) = ul_out
        agree = []
        for m in range(M):
            miss = ~P[:, m]
            same = torch.isclose(got[0][m][miss], uo[m][miss], rtol=1e-4, atol=1e-5).all(1)
            agree.append(float(same.float().mean()))
        res["greedy_rows_agree_torch"] = agree
        res["greedy_masks_equal_torch"] = bool(torch.equal(got[1], uim) and torch.equal(got[2], uun))
    del got, ul_out, tgr

    # (b) the floor: the dense GEMMs of one assignment pass
    Cf = [c.contiguous() for c in zC]
    _, ts = timed(lambda: [torch.matmul(X, c.T) for X, c in zip(Z, Cf)], dev, repeat + 2)
    res["floor_matmul_seconds"] = min(ts)
    Zp = [X[P[:, m]].contiguous() for m, X in enumerate(Z)]
    _, ts = timed(lambda: [torch.matmul(X, c.T) for X, c in zip(Zp, Cf)], dev, repeat + 2)
    res["floor_matmul_present_seconds"] = min(ts)
    del Zp, Z, tg
    res["vs_torch"] = res["torch_iter_median"] / res["ul4m4_iter_median"]
    res["vs_floor"] = res["ul4m4_iter_median"] / res["floor_matmul_seconds"]
    res["greedy_vs_torch"] = res["ul4m4_greedy_rows_per_s"] / res["torch_greedy_rows_per_s"]
    res["greedy_vs_floor"] = (N / res["floor_matmul_seconds"]) / res["ul4m4_greedy_rows_per_s"]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--iters", type=int, default=5, help="Lloyd iterations timed (tol=0)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of the completion and floor timings")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--check", action="store_true", help="compare the PyTorch formulations with ul4m4")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    import ul4m4

    dev = torch.device(args.device)
    info = {"torch": torch.__version__, "ul4m4": ul4m4.__version__, "platform": platform.platform(),
            "n": args.n, "dims": DIMS, "iters": args.iters, "missing": 0.5}
    if dev.type == "cuda":
        ok, why = ul4m4.cuda_available()
        if not ok:
            print(f"cuda_bench: the CUDA path is unavailable: {why}", file=sys.stderr)
            return 2
        info["device"] = torch.cuda.get_device_name(dev)
    else:
        info["device"] = f"cpu ({ul4m4.simd_level()})"
    print(f"device: {info['device']}; N = {args.n:,}, widths {'/'.join(map(str, DIMS))}, half the slots missing",
          flush=True)
    Xs, P = make_data(args.n, DIMS, dev)
    out = {"info": info, "runs": []}
    for K in args.k:
        r = bench_k(Xs, P, K, args.iters, dev, args.check, args.repeat)
        out["runs"].append(r)
        print(f"K={K:4d}  Lloyd s/iter: ul4m4 {r['ul4m4_iter_median']:.4f}  (a) torch {r['torch_iter_median']:.4f} "
              f"({r['vs_torch']:.2f}x)  (b) matmul floor {r['floor_matmul_seconds']:.4f} "
              f"(ul4m4 = {r['vs_floor']:.2f}x floor; present rows only {r['floor_matmul_present_seconds']:.4f})",
              flush=True)
        print(f"        completion rows/s: ul4m4 greedy {r['ul4m4_greedy_rows_per_s']:,.0f}, soft "
              f"{r['ul4m4_soft_rows_per_s']:,.0f}; (a) torch greedy {r['torch_greedy_rows_per_s']:,.0f} "
              f"({r['greedy_vs_torch']:.1f}x); floor (one matmul pass) {args.n / r['floor_matmul_seconds']:,.0f}",
              flush=True)
        if args.check:
            print(f"        check: labels agree with (a) {r['labels_agree_torch']:.4%}; greedy rows agree "
                  f"{', '.join(f'{a:.4%}' for a in r['greedy_rows_agree_torch'])}; masks equal "
                  f"{r['greedy_masks_equal_torch']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
