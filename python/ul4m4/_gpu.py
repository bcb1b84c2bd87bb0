"""The CUDA backend of :class:`UL4M4Imputer`: PyTorch CUDA tensors in, CUDA tensors out.

Python validates and converts (the same rules and messages as ``_arrays``), allocates every
device buffer as a torch tensor on the inputs' device (outputs, a uint8 workspace, the
device model), and calls ``ul4m4._cuda`` with raw pointers, shapes, strides and the current
torch stream as integers; the extension does not link against torch. All work runs on
``torch.cuda.current_stream(device)``. Contiguous float32 / float64 inputs are used in
place (no copy); a tensor whose rows are not contiguous is made contiguous on the device.
Host inputs (numpy, CPU tensors) with ``device='cuda'`` are copied to the GPU once and the
results copied back into the caller's container type.

The fitted model stays on the host (numpy arrays, as the CPU path); its device tables are
built once per device and cached on the estimator.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np

from ._arrays import (as_mask, check_aliasing, check_dims, check_float, check_list_dims, column_views, explain,
                      is_torch, out_parts, rows_contiguous, to_numpy)

__all__ = ["availability", "check_device", "use_cuda", "prepare", "compute_stats", "kmeans", "complete", "assign"]

_DEVICE_VALUES = ("auto", "cpu", "cuda")
_BUILD_HINT = ("rebuild ul4m4 from source where nvcc (CUDA >= 12.1) is on PATH, e.g. "
               "pip install --no-binary ul4m4 ul4m4 --config-settings=cmake.define.UL4M4_CUDA=ON")


def _chunk_budget() -> int:
    """Bytes of per-chunk scratch on the GPU (results do not depend on it)."""
    mb = os.environ.get("UL4M4_CUDA_CHUNK_MB")
    if mb:
        try:
            return max(1, int(mb)) << 20
        except ValueError:
            pass
    return 256 << 20


def _module():
    from . import _cuda  # ImportError when the package was built without it

    return _cuda


def availability() -> tuple:
    """(True, '') when the CUDA path can run here, else (False, the reason and how to fix it)."""
    try:
        cu = _module()
    except ImportError as exc:
        return False, f"ul4m4 was built without its CUDA module ({exc}); {_BUILD_HINT}"
    n, why = cu.probe()
    if n == 0:
        ver = cu.runtime_version
        return False, (f"no CUDA GPU visible: {why} (ul4m4's CUDA module is built for CUDA {ver // 1000}.{ver % 1000 // 10}; "
                       "it needs an NVIDIA GPU and a driver that supports that version: check nvidia-smi and "
                       "CUDA_VISIBLE_DEVICES)")
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed: the CUDA path takes and returns torch CUDA tensors (pip install torch)"
    if not torch.cuda.is_available():
        return False, (f"this PyTorch ({torch.__version__}) sees no CUDA device: the CUDA path needs a CUDA build of "
                       "torch (see https://pytorch.org/get-started/locally/)")
    return True, ""


def check_device(device: Any) -> str:
    """'auto' | 'cpu' | 'cuda' | 'cuda:<index>'; anything else is a ValueError."""
    if isinstance(device, str):
        d = device.strip().lower()
        if d in _DEVICE_VALUES:
            return d
        if d.startswith("cuda:") and d[5:].isdigit():
            return d
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")


def _cuda_tensors(X: Any) -> list:
    items = list(X) if isinstance(X, (list, tuple)) else [X]
    return [x for x in items if is_torch(x) and x.device.type == "cuda"]


def use_cuda(device: Any, X: Any, mask: Any = None) -> bool:
    """Whether a call runs on the GPU. 'auto': when X holds CUDA tensors. 'cuda': always (an
    error when the CUDA path is unavailable, never a silent CPU fallback). 'cpu': never (CUDA
    tensors are then an error, not a hidden copy)."""
    d = check_device(device)
    on_gpu = _cuda_tensors(X)
    if d == "cpu":
        if on_gpu:
            raise ValueError(f"X holds tensors on '{on_gpu[0].device}' but device='cpu': move them with .cpu(), or "
                             "use device='auto' / 'cuda' to compute on the GPU")
        return False
    if d == "auto" and not on_gpu:
        return False
    ok, why = availability()
    if not ok:
        what = f"device={device!r}" if d != "auto" else f"X on '{on_gpu[0].device}'"
        raise RuntimeError(f"{what} needs the CUDA path, which is not available: {why}")
    return True


# ----------------------------------------------------------------------------- inputs
def _torch():
    import torch

    return torch


def _torch_dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


def _check_tensor(t, what: str):
    torch = _torch()
    if t.layout != torch.strided:
        raise TypeError(f"{what} is a sparse tensor; pass a dense one")
    if t.dtype in (torch.float32, torch.float64):
        return t.detach()
    if not t.dtype.is_floating_point and not t.dtype.is_complex:
        raise TypeError(f"{what} has dtype {_torch_dtype_name(t)}; ul4m4 works on float32 or float64 embeddings "
                        "(convert with .float())")
    if t.dtype.is_floating_point:
        raise TypeError(f"{what} has dtype {_torch_dtype_name(t)}; convert it to float32 or float64")
    raise TypeError(f"{what} has unsupported dtype {_torch_dtype_name(t)}")


def _rows_ok(t) -> bool:
    return t.dim() == 2 and (t.shape[1] <= 1 or t.stride(1) == 1) and t.stride(0) >= 0


def _to_device(x: Any, what: str, dev):
    """A 2-D-or-not float tensor on `dev`: CUDA tensors as they are (detached), host arrays
    validated as the CPU path does and copied once."""
    torch = _torch()
    if is_torch(x):
        t = _check_tensor(x, what)
        if t.device.type == "cuda":
            if t.device != dev:
                raise ValueError(f"{what} is on '{t.device}' but the computation runs on '{dev}': put every input on "
                                 "one device")
            return t
        return t.to(dev)
    a = check_float(to_numpy(x, what), what)
    a = rows_contiguous(a) if a.ndim == 2 else np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch.from_numpy warns on read-only arrays; the copy to the GPU reads only
        a = a.copy()
    return torch.from_numpy(a).to(dev)


def _target_device(device: str, X: Any):
    torch = _torch()
    on_gpu = _cuda_tensors(X)
    if on_gpu:
        dev = on_gpu[0].device
        if device.startswith("cuda:") and dev != torch.device(device):
            raise ValueError(f"X is on '{dev}' but device={device!r}")
        return dev
    if device.startswith("cuda:"):
        return torch.device(device)
    return torch.device("cuda", torch.cuda.current_device())


@dataclass
class CudaPrepared:
    """Device inputs as the CUDA engine takes them, plus what rebuilds the caller's container."""

    Xs: List[Any]          # torch tensors on `device`, 2-D, rows contiguous, float32/float64
    present: Any           # (n, M) uint8 tensor on `device`, contiguous
    n: int
    kind: str              # 'list' or 'dense'
    dims: List[int]
    device: Any
    host: str              # 'cuda' (caller's CUDA tensors), 'torch' (CPU tensors) or 'numpy'
    scan: dict
    dense: Any = None
    container: type = list
    originals: List[Any] = field(default_factory=list)
    mask_given: bool = False

    @property
    def torch(self) -> bool:
        return self.host != "numpy"


def _arg(t) -> tuple:
    """(ptr, rows, cols, row_stride, dtype) of a 2-D tensor with contiguous rows."""
    torch = _torch()
    rows, cols = int(t.shape[0]), int(t.shape[1])
    stride = int(t.stride(0)) if rows > 1 else cols
    return (int(t.data_ptr()), rows, cols, stride, "float32" if t.dtype == torch.float32 else "float64")


class _Call:
    """The stream, device and a workspace of one engine call."""

    def __init__(self, dev, nbytes: int):
        torch = _torch()
        self.dev = dev
        self.stream = torch.cuda.current_stream(dev)
        self.ws = torch.empty(max(int(nbytes), 256), dtype=torch.uint8, device=dev)
        if self.ws.data_ptr() % 256:
            raise RuntimeError("torch returned a workspace that is not 256-byte aligned")

    @property
    def launch(self) -> tuple:
        return (self.dev.index, int(self.stream.cuda_stream), int(self.ws.data_ptr()), int(self.ws.numel()))


def prepare(X: Any, mask: Any, modality_dims, device: str, expect=None) -> CudaPrepared:
    """Validate and place X and mask on the GPU, and scan them (NaN marking, finiteness,
    empty rows) on the device. Errors are those of ``_arrays.prepare``."""
    torch = _torch()
    cu = _module()
    check_list_dims(X, modality_dims)
    device = check_device(device)
    dev = _target_device(device, X)
    items = list(X) if isinstance(X, (list, tuple)) else [X]
    kinds = {("cuda" if x.device.type == "cuda" else "torch") if is_torch(x) else "numpy" for x in items}
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is an empty list: give one array per modality")
        torch_in = [is_torch(x) for x in X]
        if any(torch_in) and not all(torch_in):
            raise TypeError("mix of torch tensors and numpy arrays in X; use one kind")
        if kinds == {"cuda", "torch"}:
            raise ValueError("mix of CPU and CUDA tensors in X; put every modality on one device")
        Xs = []
        for m, x in enumerate(X):
            t = _to_device(x, f"modality {m}", dev)
            if t.dim() != 2:
                raise ValueError(f"modality {m} must be 2-D (n_samples, d_{m}), got shape {tuple(t.shape)}")
            if t.shape[1] == 0:
                raise ValueError(f"modality {m} has width 0")
            Xs.append(t if _rows_ok(t) else t.contiguous())
        n = int(Xs[0].shape[0])
        for m, t in enumerate(Xs):
            if t.shape[0] != n:
                raise ValueError(
                    f"modality {m} has {t.shape[0]} rows but modality 0 has {n}: every modality needs one row per sample")
        kind, dense = "list", None
        container = tuple if isinstance(X, tuple) else list
    else:
        t = _to_device(X, "X", dev)
        if t.dim() != 2:
            raise ValueError(
                f"X must be a list of per-modality 2-D arrays, or one 2-D array with modality_dims; got shape {tuple(t.shape)}")
        if modality_dims is None:
            raise ValueError("a single 2-D X needs modality_dims (the width of each modality's block of columns)")
        dims = [int(d) for d in modality_dims]
        if any(d <= 0 for d in dims) or sum(dims) != t.shape[1]:
            raise ValueError(f"modality_dims {dims} must be positive and sum to X's {t.shape[1]} columns")
        if not _rows_ok(t):
            t = t.contiguous()
        Xs = column_views(t, dims)
        n, kind, dense, container = int(t.shape[0]), "dense", t, list
    if n == 0:
        raise ValueError("X has no rows")
    M = len(Xs)
    if M > 64:
        raise ValueError(f"at most 64 modalities are supported, got {M}")
    dims = [int(t.shape[1]) for t in Xs]
    check_dims(dims, expect)
    host = kinds.pop() if len(kinds) == 1 else "numpy"
    with torch.cuda.device(dev):
        if mask is None:
            present = torch.empty((n, M), dtype=torch.uint8, device=dev)
            present_ptr, out_ptr = 0, int(present.data_ptr())
        else:
            present = _mask(mask, n, M, dev)
            present_ptr, out_ptr = int(present.data_ptr()), 0
        call = _Call(dev, cu.scan_workspace(n, M))
        scan = cu.scan([_arg(t) for t in Xs], present_ptr, n, out_ptr, call.launch)
    if scan["partly_row"] >= 0:
        i, m = scan["partly_row"], scan["partly_m"]
        raise ValueError(f"row {i} of modality {m} is partly NaN ({scan['partly_nan']} of {dims[m]} values): a missing "
                         "modality must be all NaN or marked in the mask")
    return CudaPrepared(Xs=Xs, present=present, n=n, kind=kind, dims=dims, device=dev, host=host, scan=scan,
                        dense=dense, container=container, originals=items, mask_given=mask is not None)


def _mask(mask: Any, n: int, M: int, dev):
    torch = _torch()
    if is_torch(mask) and mask.device.type == "cuda":  # checked on the device (the rules of _arrays.as_mask)
        t = mask.detach()
        if t.dtype != torch.bool and (t.dtype.is_floating_point or t.dtype.is_complex):
            raise TypeError(f"mask must be a boolean array (True = observed) or integers 0/1 (1 = observed), "
                            f"got dtype {_torch_dtype_name(t)}")
        if tuple(t.shape) != (n, M):
            raise ValueError(f"mask has shape {tuple(t.shape)}; expected (n_samples, n_modalities) = {(n, M)}")
        if t.dtype != torch.bool:
            if bool(((t != 0) & (t != 1)).any()):
                raise ValueError("mask: an integer mask must hold only 0 and 1 (1 = observed)")
            t = t != 0
        return t.to(dev).contiguous().view(torch.uint8)
    return torch.from_numpy(as_mask(mask, n, M).view(np.uint8)).to(dev)


def nonfinite_error(prep: CudaPrepared) -> Optional[ValueError]:
    s = prep.scan
    if s["bad_row"] < 0:
        return None
    return explain(ValueError(f"NaN or inf in an observed slot: row {s['bad_row']} of modality {s['bad_m']} "
                              "(mark absent rows in the mask, or make the whole row NaN)"), prep.Xs, prep.mask_given)


# ----------------------------------------------------------------------------- fit
def compute_stats(prep: CudaPrepared):
    """docs/algorithm.md section 1 on the device: (mu, sigma) as lists of (d_m,) float64 numpy arrays."""
    torch = _torch()
    cu = _module()
    err = nonfinite_error(prep)
    if err is not None:  # the CPU order: a modality never observed is reported first
        counts = prep.present.sum(dim=0).cpu().numpy()
        for m, c in enumerate(counts):
            if c == 0:
                raise ValueError(f"modality {m} has no observed row in the training data: it cannot be fitted")
        raise err
    D = sum(prep.dims)
    with torch.cuda.device(prep.device):
        mu = torch.empty(D, dtype=torch.float64, device=prep.device)
        sigma = torch.empty(D, dtype=torch.float64, device=prep.device)
        call = _Call(prep.device, cu.stats_workspace(prep.n, prep.dims))
        cu.compute_stats([_arg(t) for t in prep.Xs], int(prep.present.data_ptr()), prep.n, int(mu.data_ptr()),
                         int(sigma.data_ptr()), call.launch)
        mu_h, sigma_h = mu.cpu().numpy(), sigma.cpu().numpy()
    return ([v.copy() for v in column_views(mu_h, prep.dims)], [v.copy() for v in column_views(sigma_h, prep.dims)])


def kmeans(prep: CudaPrepared, mu, sigma, K: int, max_iter: int, tol: float, n_init: int, seed: int, init_C, init_H,
           callback) -> dict:
    """Sections 3-4 on the device; the result dict of ``_core.kmeans`` (numpy, host)."""
    torch = _torch()
    cu = _module()
    dev, M, D = prep.device, len(prep.dims), sum(prep.dims)
    budget = _chunk_budget()
    with torch.cuda.device(dev):
        mu_d = torch.from_numpy(np.concatenate(mu)).to(dev)
        sigma_d = torch.from_numpy(np.concatenate(sigma)).to(dev)
        C0 = H0 = None
        if init_C is not None:
            C0 = torch.from_numpy(np.ascontiguousarray(np.hstack(init_C), dtype=np.float64)).to(dev)
            H0 = torch.from_numpy(np.ascontiguousarray(init_H, dtype=np.uint8)).to(dev)
        C = torch.empty((K, D), dtype=torch.float64, device=dev)
        H = torch.empty((K, M), dtype=torch.uint8, device=dev)
        labels = torch.empty(prep.n, dtype=torch.int32, device=dev)
        call = _Call(dev, cu.kmeans_workspace(prep.n, K, prep.dims, budget))
        res = cu.kmeans([_arg(t) for t in prep.Xs], int(prep.present.data_ptr()), prep.n, int(mu_d.data_ptr()),
                        int(sigma_d.data_ptr()), K, max_iter, tol, n_init, seed,
                        int(C0.data_ptr()) if C0 is not None else 0, int(H0.data_ptr()) if H0 is not None else 0,
                        int(C.data_ptr()), int(H.data_ptr()), int(labels.data_ptr()), callback, budget, call.launch)
        Ch, Hh, Lh = C.cpu().numpy(), H.cpu().numpy().astype(bool), labels.cpu().numpy()
    res["centres"] = [np.ascontiguousarray(c) for c in column_views(Ch, prep.dims)]
    res["H"] = Hh
    res["labels"] = Lh
    return res


# ----------------------------------------------------------------------------- inference
def _device_model(imp, dev):
    """The fitted model's device tables on `dev` (built once, cached on the estimator)."""
    torch = _torch()
    cu = _module()
    cache = getattr(imp, "_gpu_models", None)
    if cache is None:
        cache = imp._gpu_models = {}
    key = str(dev)
    if key not in cache:
        dims = [int(mu.shape[0]) for mu in imp.mean_]
        K = int(imp.center_mask_.shape[0])
        with torch.cuda.device(dev):
            mu = torch.from_numpy(np.concatenate(imp.mean_).astype(np.float64)).to(dev)
            sigma = torch.from_numpy(np.concatenate(imp.scale_).astype(np.float64)).to(dev)
            C = torch.from_numpy(np.ascontiguousarray(np.hstack(imp.cluster_centers_), dtype=np.float64)).to(dev)
            H = torch.from_numpy(np.ascontiguousarray(imp.center_mask_, dtype=np.uint8)).to(dev)
            buf = torch.empty(max(cu.model_bytes(K, dims, True), 256), dtype=torch.uint8, device=dev)
            stream = torch.cuda.current_stream(dev)
            cu.build_model(int(buf.data_ptr()), K, dims, int(mu.data_ptr()), int(sigma.data_ptr()), int(C.data_ptr()),
                           int(H.data_ptr()), True, (dev.index, int(stream.cuda_stream), 0, 0))
            stream.synchronize()  # once per model: the build is done before the uploads are freed
        cache[key] = (buf, K)
    return cache[key]


def _to_host(t, prep: CudaPrepared):
    if prep.host == "cuda":
        return t
    t = t.cpu()
    return t if prep.host == "torch" else t.numpy()


def _new_outputs(prep: CudaPrepared):
    torch = _torch()
    if prep.kind == "dense":
        o = torch.empty(prep.dense.shape, dtype=prep.dense.dtype, device=prep.device)
        return o, column_views(o, prep.dims)
    outs = [torch.empty(t.shape, dtype=t.dtype, device=prep.device) for t in prep.Xs]
    return outs, outs


def _cuda_out(prep: CudaPrepared, out: Any):
    """Caller-given CUDA output tensors (like ``_arrays.use_out``)."""

    def chk(o, what, like):
        if not (is_torch(o) and o.device == prep.device):
            raise ValueError(f"{what} must be a tensor on '{prep.device}' like X")
        if tuple(o.shape) != tuple(like.shape) or o.dtype != like.dtype:
            raise ValueError(f"{what} must have shape {tuple(like.shape)} and dtype {like.dtype}, got "
                             f"{tuple(o.shape)} {o.dtype}")
        if not _rows_ok(o):
            raise ValueError(f"{what} must have contiguous rows")
        if o.requires_grad:
            raise ValueError(f"{what} requires grad; pass a detached tensor")
        return o

    views = [chk(o, what, like) for o, what, like in out_parts(prep, out)]
    if prep.kind == "dense":
        check_aliasing([_proxy(views[0])], [_proxy(prep.dense)], ["out"], ["X"])
        return out, column_views(views[0], prep.dims)
    check_aliasing([_proxy(v) for v in views], [_proxy(x) for x in prep.Xs], [f"out[{m}]" for m in range(len(views))],
                   [f"modality {m} of X" for m in range(len(views))])
    return out, views


class _Ptr:
    """A numpy array header over a device tensor's address range, for the overlap check only
    (numpy computes bounds and overlaps from the address and strides; nothing is read)."""

    def __init__(self, t):
        es = t.element_size()
        self.__array_interface__ = {"data": (int(t.data_ptr()), False), "shape": tuple(int(s) for s in t.shape),
                                    "strides": tuple(int(s) * es for s in t.stride()),
                                    "typestr": "<f4" if es == 4 else "<f8", "version": 3}


def _proxy(t) -> np.ndarray:
    return np.asarray(_Ptr(t))


def _copy_back(out: Any, result, prep: CudaPrepared):
    """Host `out` (numpy / CPU tensors) given with device='cuda': checked as the CPU path
    checks it (against the caller's host arrays), then the device results copied in."""
    from types import SimpleNamespace

    from ._arrays import use_out

    if prep.kind == "dense":
        like = SimpleNamespace(kind="dense", dims=prep.dims, dense=to_numpy(prep.originals[0], "X"), Xs=[],
                               originals=[])
    else:
        like = SimpleNamespace(kind="list", dims=prep.dims, dense=None, originals=[],
                               Xs=[to_numpy(x, f"modality {m}") for m, x in enumerate(prep.originals)])
    cont, views = use_out(like, out)
    if prep.kind == "dense":
        np.copyto(to_numpy(out, "out"), result.cpu().numpy())
    else:
        for v, r in zip(views, result):
            np.copyto(v, r.cpu().numpy())
    return cont


def complete(imp, prep: CudaPrepared, completion: str, temperature_scale: float, temperature: float,
             out: Any = None, return_masks: bool = False):
    """Sections 5-6 on the device; outputs in the caller's container, on the caller's device."""
    torch = _torch()
    cu = _module()
    buf, K = _device_model(imp, prep.device)
    budget = _chunk_budget()
    soft = completion == "soft"
    host_out = out is not None and prep.host != "cuda"
    with torch.cuda.device(prep.device):
        if out is None or host_out:
            cont, views = _new_outputs(prep)
        else:
            cont, views = _cuda_out(prep, out)
        M = len(prep.dims)
        imputed = torch.empty((prep.n, M), dtype=torch.uint8, device=prep.device)
        unfilled = torch.empty((prep.n, M), dtype=torch.uint8, device=prep.device)
        call = _Call(prep.device, cu.complete_workspace(prep.n, K, prep.dims, soft, budget))
        cu.complete(int(buf.data_ptr()), K, [_arg(t) for t in prep.Xs], int(prep.present.data_ptr()), prep.n,
                    [_arg(v) for v in views], int(imputed.data_ptr()), int(unfilled.data_ptr()), completion,
                    float(temperature_scale), float(temperature), budget, call.launch)
    imputed, unfilled = imputed.view(torch.bool), unfilled.view(torch.bool)
    if host_out:
        result = _copy_back(out, cont, prep)
    elif out is not None:
        result = out  # the caller's CUDA tensors, filled
    elif prep.kind == "dense":
        result = _to_host(cont, prep)
    else:
        result = prep.container(_to_host(t, prep) for t in cont)
    if return_masks:
        return result, _to_host(imputed, prep), _to_host(unfilled, prep)
    return result


def assign(imp, prep: CudaPrepared):
    """Nearest centre of each row on the device (int32, -1: shares no modality)."""
    torch = _torch()
    cu = _module()
    buf, K = _device_model(imp, prep.device)
    budget = _chunk_budget()
    with torch.cuda.device(prep.device):
        labels = torch.empty(prep.n, dtype=torch.int32, device=prep.device)
        call = _Call(prep.device, cu.assign_workspace(prep.n, K, prep.dims, budget))
        cu.assign(int(buf.data_ptr()), K, [_arg(t) for t in prep.Xs], int(prep.present.data_ptr()), prep.n,
                  int(labels.data_ptr()), 0, budget, call.launch)
    return _to_host(labels, prep)
