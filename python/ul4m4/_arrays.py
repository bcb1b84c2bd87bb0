"""Input conversion and validation (numpy and torch, without importing torch).

Everything that turns a user's arrays into what the compiled core takes lives here:
per-modality 2-D float arrays with contiguous rows, and an N x M uint8 presence mask.
No caller array is ever written; copies are made only when the layout requires one
(a non-contiguous row, an unsupported stride).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import numpy as np

__all__ = ["Prepared", "prepare", "is_torch", "new_like"]


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor, tested without importing torch."""
    t = type(x)
    return t.__module__.split(".")[0] == "torch" and t.__name__ in ("Tensor", "Parameter")


def _torch_to_numpy(t: Any, what: str) -> np.ndarray:
    if t.device.type != "cpu":
        raise ValueError(
            f"{what} is a torch tensor on '{t.device}' but this call computes on the CPU "
            "(move it with .cpu(), or pass CUDA tensors for X / device='cuda' to compute on the GPU)"
        )
    if t.is_sparse if hasattr(t, "is_sparse") else False:
        raise TypeError(f"{what} is a sparse tensor; pass a dense one")
    return t.detach().numpy()  # zero-copy view


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if is_torch(x):
        return _torch_to_numpy(x, what)
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        return np.asarray(x)
    raise TypeError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _check_float(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.float32 or a.dtype == np.float64:
        pass
    elif a.dtype.kind in "iub":
        raise TypeError(
            f"{what} has dtype {a.dtype}; ul4m4 works on float32 or float64 embeddings "
            "(convert with .astype(np.float32))"
        )
    elif a.dtype.kind == "f":
        raise TypeError(f"{what} has dtype {a.dtype}; convert it to float32 or float64")
    else:
        raise TypeError(f"{what} has unsupported dtype {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    elif a.dtype is not np.dtype(a.dtype.type):
        a = a.view(a.dtype.type)  # an unpickled dtype (joblib, memmaps): the canonical one, no copy
    return a


def _rows_contiguous(a: np.ndarray) -> np.ndarray:
    """A view when rows are already contiguous, else a C-contiguous copy."""
    es = a.itemsize
    ok = (a.shape[1] <= 1 or a.strides[1] == es) and a.strides[0] >= 0 and a.strides[0] % es == 0
    return a if ok else np.ascontiguousarray(a)


@dataclass
class Prepared:
    """Inputs as the core takes them, plus what is needed to rebuild the caller's container."""

    Xs: List[np.ndarray]             # per modality, rows contiguous, float32/float64
    present: np.ndarray              # N x M uint8 (C-contiguous)
    n: int
    kind: str                        # 'list' or 'dense'
    torch: bool                      # inputs were torch tensors
    dims: List[int]
    dense: Optional[np.ndarray] = None   # the dense 2-D input (dense kind)
    originals: List[Any] = field(default_factory=list)
    container: type = list                # list or tuple (list kind)


def _mask(mask: Any, n: int, M: int) -> np.ndarray:
    m = _to_numpy(mask, "mask")
    if m.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array (True = present), got dtype {m.dtype}")
    if m.shape != (n, M):
        raise ValueError(f"mask has shape {m.shape}; expected (n_samples, n_modalities) = {(n, M)}")
    return np.ascontiguousarray(m).view(np.uint8)


def prepare(X: Any, mask: Any, modality_dims: Optional[Sequence[int]], core: Any, n_threads: int,
            chunk: int) -> Prepared:
    """Validate and convert ``X`` (list of per-modality arrays, or one 2-D array split by
    ``modality_dims``) and ``mask``; absent rows may be marked by NaN when mask is None."""
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is an empty list: give one array per modality")
        torch_in = [is_torch(x) for x in X]
        if any(torch_in) and not all(torch_in):
            raise TypeError("mix of torch tensors and numpy arrays in X; use one kind")
        Xs = []
        for m, x in enumerate(X):
            a = _to_numpy(x, f"modality {m}")
            if a.ndim != 2:
                raise ValueError(f"modality {m} must be 2-D (n_samples, d_{m}), got shape {a.shape}")
            a = _check_float(a, f"modality {m}")
            if a.shape[1] == 0:
                raise ValueError(f"modality {m} has width 0")
            Xs.append(_rows_contiguous(a))
        n = Xs[0].shape[0]
        for m, a in enumerate(Xs):
            if a.shape[0] != n:
                raise ValueError(
                    f"modality {m} has {a.shape[0]} rows but modality 0 has {n}: every modality needs one row per sample"
                )
        kind, dense, torch_flag = "list", None, all(torch_in)
        originals = list(X)
        container = tuple if isinstance(X, tuple) else list
    else:
        torch_flag = is_torch(X)
        a = _to_numpy(X, "X")
        if a.ndim != 2:
            raise ValueError(
                f"X must be a list of per-modality 2-D arrays, or one 2-D array with modality_dims; got shape {a.shape}. "
                "Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a single sample"
            )
        if modality_dims is None:
            raise ValueError("a single 2-D X needs modality_dims (the width of each modality's block of columns)")
        dims = [int(d) for d in modality_dims]
        if any(d <= 0 for d in dims) or sum(dims) != a.shape[1]:
            raise ValueError(f"modality_dims {dims} must be positive and sum to X's {a.shape[1]} columns")
        a = _rows_contiguous(_check_float(a, "X"))
        offs = np.concatenate([[0], np.cumsum(dims)])
        Xs = [a[:, offs[m]:offs[m + 1]] for m in range(len(dims))]
        n, kind, dense = a.shape[0], "dense", a
        originals = [X]
        container = list
    if n == 0:
        raise ValueError("X has no rows")
    M = len(Xs)
    if M > 64:
        raise ValueError(f"at most 64 modalities are supported, got {M}")
    dims = [a.shape[1] for a in Xs]
    if mask is None:
        present = core.presence_from_nan(Xs, n, n_threads, chunk)
    else:
        present = _mask(mask, n, M)
    return Prepared(Xs=Xs, present=present, n=n, kind=kind, torch=torch_flag, dims=dims, dense=dense,
                    originals=originals, container=container)


def new_like(prep: Prepared) -> tuple:
    """Fresh output arrays with the input's container type and dtypes.

    Returns (container, per-modality numpy views the core writes into)."""
    if prep.torch:
        import torch  # only reached when the caller passed torch tensors

        def alloc(shape, dtype):
            t = torch.empty(shape, dtype=torch.float32 if dtype == np.float32 else torch.float64)
            return t, t.numpy()
    else:
        def alloc(shape, dtype):
            a = np.empty(shape, dtype=dtype)
            return a, a

    if prep.kind == "dense":
        cont, view = alloc(prep.dense.shape, prep.dense.dtype)
        offs = np.concatenate([[0], np.cumsum(prep.dims)])
        return cont, [view[:, offs[m]:offs[m + 1]] for m in range(len(prep.dims))]
    conts, views = [], []
    for a in prep.Xs:
        c, v = alloc(a.shape, a.dtype)
        conts.append(c)
        views.append(v)
    return prep.container(conts), views


def use_out(prep: Prepared, out: Any) -> tuple:
    """Caller-given output arrays (``transform(..., out=...)``): same container kind, shapes
    and dtypes as the input, writeable; ``out`` may be the input itself (in-place fill of
    the missing slots) but must not otherwise overlap it. Returns like :func:`new_like`."""
    def arr(o, what, like):
        a = _to_numpy(o, what)
        if a.shape != like.shape or a.dtype != like.dtype:
            raise ValueError(f"{what} must have shape {like.shape} and dtype {like.dtype}, got {a.shape} {a.dtype}")
        if not a.flags.writeable:
            raise ValueError(f"{what} is read-only")
        if (a.shape[1] > 1 and a.strides[1] != a.itemsize) or a.strides[0] < 0:
            raise ValueError(f"{what} must have contiguous rows")
        return a

    if prep.kind == "dense":
        if isinstance(out, (list, tuple)):
            raise TypeError("out must be one 2-D array like X")
        a = arr(out, "out", prep.dense)
        if a is not prep.dense and np.shares_memory(a, prep.dense):
            raise ValueError("out overlaps X without being X")
        offs = np.concatenate([[0], np.cumsum(prep.dims)])
        return out, [a[:, offs[m]:offs[m + 1]] for m in range(len(prep.dims))]
    if not isinstance(out, (list, tuple)) or len(out) != len(prep.Xs):
        raise TypeError(f"out must be a list of {len(prep.Xs)} arrays, one per modality")
    views = []
    for m, (o, x) in enumerate(zip(out, prep.Xs)):
        a = arr(o, f"out[{m}]", x)
        same = a.__array_interface__["data"][0] == x.__array_interface__["data"][0] and a.strides == x.strides
        if not same and np.shares_memory(a, x):
            raise ValueError(f"out[{m}] overlaps modality {m} without being it")
        views.append(a)
    return out, views


def mask_out(prep: Prepared, m: np.ndarray):
    """A boolean mask in the caller's world (torch tensor for torch inputs)."""
    if prep.torch:
        import torch

        return torch.from_numpy(m)
    return m
