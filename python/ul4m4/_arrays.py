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

__all__ = ["Prepared", "prepare", "is_torch", "new_like", "use_out", "as_mask", "check_dims", "check_aliasing",
           "explain", "inverted_mask_hint"]


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
    try:
        return t.detach().numpy()  # zero-copy view
    except (TypeError, RuntimeError):  # bfloat16, float8, conjugate views ...: no numpy equivalent
        dt = str(t.dtype).replace("torch.", "")
        raise TypeError(f"{what} is a torch tensor of dtype {dt}, which numpy cannot hold; ul4m4 works on float32 "
                        "or float64 (convert with .float(); a mask with .bool())") from None


def to_numpy(x: Any, what: str) -> np.ndarray:
    if is_torch(x):
        return _torch_to_numpy(x, what)
    if isinstance(x, np.ma.MaskedArray):
        # Its mask is per value, ul4m4's per (row, modality): refused rather than ignored.
        raise TypeError(f"{what} is a numpy masked array; ul4m4 does not read numpy masks. Pass "
                        "np.ma.filled(a, np.nan) (a row whose values are all masked becomes missing) or the plain "
                        "array with a presence mask (mask=..., True = observed)")
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged nested lists ...
            raise ValueError(f"{what} cannot be read as a 2-D array ({exc})") from None
    raise TypeError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def check_float(a: np.ndarray, what: str) -> np.ndarray:
    """float32 / float64 compared by value (kind and size), any byte order: a big-endian
    array is converted to a native copy (the caller's array is never changed)."""
    dt = a.dtype
    if dt.kind == "f" and dt.itemsize in (4, 8):
        if not dt.isnative:
            a = a.astype(dt.newbyteorder("="))
        return a
    if dt.kind in "iub":
        raise TypeError(
            f"{what} has dtype {dt}; ul4m4 works on float32 or float64 embeddings "
            "(convert with .astype(np.float32))"
        )
    if dt.kind == "f":
        raise TypeError(f"{what} has dtype {dt}; ul4m4 works on float32 or float64 (convert with "
                        ".astype(np.float32), or .float() for a torch tensor)")
    raise TypeError(f"{what} has unsupported dtype {dt}; ul4m4 works on float32 or float64 embeddings")


def rows_contiguous(a: np.ndarray) -> np.ndarray:
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
    mask_given: bool = False              # presence came from mask= (not from NaN rows)


def as_mask(mask: Any, n: int, M: int, what: str = "mask") -> np.ndarray:
    """The (n, M) presence mask as a C-contiguous bool array: booleans (True = observed), or
    integers holding only 0 and 1 (1 = observed; any byte order). The command line and the
    Python API both read masks through this."""
    m = to_numpy(mask, what)
    if m.dtype.kind not in "biu":
        raise TypeError(f"{what} must be a boolean array (True = observed) or integers 0/1 (1 = observed), "
                        f"got dtype {m.dtype}")
    if m.shape != (n, M):
        raise ValueError(f"{what} has shape {m.shape}; expected (n_samples, n_modalities) = {(n, M)}")
    if m.dtype.kind == "b":
        return np.ascontiguousarray(m)
    bad = (m != 0) & (m != 1)
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"{what}: an integer mask must hold only 0 and 1 (1 = observed); row {i}, modality {j} "
                         f"holds {m[i, j]}")
    return m != 0


def check_dims(dims: Sequence[int], expect: Optional[Sequence[int]]) -> None:
    """The modality count and widths of X against those a model was fitted on (checked
    before anything reads the rows, so that a wrong count is named as such)."""
    if expect is None:
        return
    expect = [int(d) for d in expect]
    if len(dims) != len(expect):
        raise ValueError(f"X has {len(dims)} modalities but the model was fitted on {len(expect)} (X's widths: "
                         f"{', '.join(map(str, dims))}; the model's: {', '.join(map(str, expect))})")
    for m, (d, e) in enumerate(zip(dims, expect)):
        if d != e:
            raise ValueError(f"modality {m} has width {d} but the model was fitted with {e} "
                             f"(widths {', '.join(map(str, expect))}, in that order)")


def check_list_dims(X: Any, modality_dims: Any) -> None:
    """modality_dims splits one 2-D X into column blocks; with a list of per-modality arrays
    it must agree with their widths (a model fitted on one 2-D X also takes the same data as
    a list), and any disagreement is an error rather than being ignored."""
    if isinstance(X, (list, tuple)) and modality_dims is not None:
        shapes = [tuple(getattr(x, "shape", ())) for x in X]
        if all(len(sh) == 2 for sh in shapes):
            widths = [int(sh[1]) for sh in shapes]
            if [int(d) for d in modality_dims] != widths:
                raise ValueError(f"modality_dims={[int(d) for d in modality_dims]} does not match the widths {widths} "
                                 "of the arrays in X: modality_dims only splits one 2-D X into column blocks. "
                                 "Set modality_dims=None, or pass one 2-D array")


def prepare(X: Any, mask: Any, modality_dims: Optional[Sequence[int]], core: Any, n_threads: int,
            chunk: int, expect: Optional[Sequence[int]] = None) -> Prepared:
    """Validate and convert ``X`` (list of per-modality arrays, or one 2-D array split by
    ``modality_dims``) and ``mask``; absent rows may be marked by NaN when mask is None.
    ``expect``: the widths a fitted model needs (count and widths are checked first)."""
    check_list_dims(X, modality_dims)
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is an empty list: give one array per modality")
        torch_in = [is_torch(x) for x in X]
        if any(torch_in) and not all(torch_in):
            raise TypeError("mix of torch tensors and numpy arrays in X; use one kind")
        Xs = []
        for m, x in enumerate(X):
            a = to_numpy(x, f"modality {m}")
            if a.ndim != 2:
                raise ValueError(f"modality {m} must be 2-D (n_samples, d_{m}), got shape {a.shape}")
            a = check_float(a, f"modality {m}")
            if a.shape[1] == 0:
                raise ValueError(f"modality {m} has width 0")
            Xs.append(rows_contiguous(a))
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
        a = to_numpy(X, "X")
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
        a = rows_contiguous(check_float(a, "X"))
        Xs = column_views(a, dims)
        n, kind, dense = a.shape[0], "dense", a
        originals = [X]
        container = list
    if n == 0:
        raise ValueError("X has no rows")
    M = len(Xs)
    if M > 64:
        raise ValueError(f"at most 64 modalities are supported, got {M}")
    dims = [a.shape[1] for a in Xs]
    check_dims(dims, expect)
    if mask is None:
        present = core.presence_from_nan(Xs, n, n_threads, chunk)
    else:
        present = as_mask(mask, n, M).view(np.uint8)
    return Prepared(Xs=Xs, present=present, n=n, kind=kind, torch=torch_flag, dims=dims, dense=dense,
                    originals=originals, container=container, mask_given=mask is not None)


# Outputs at least this large come from the compiled core's output pool
# (python/bindings/output_pool.hpp): memory the previous call's outputs freed, already
# mapped, instead of new pages the kernel must fault in and clear one by one.
POOLED_OUTPUT_BYTES = 16 << 20


def _empty(shape: tuple, dtype: np.dtype, call_bytes: int, core: Any) -> np.ndarray:
    """np.empty(shape, dtype), from the output pool when large (C-contiguous, writeable)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if core is None or nbytes < POOLED_OUTPUT_BYTES:
        return np.empty(shape, dtype=dtype)
    return core.output_block(nbytes, call_bytes).view(dtype).reshape(shape)


def new_like(prep: Prepared, core: Any = None) -> tuple:
    """Fresh output arrays with the input's container type and dtypes; with ``core`` (the
    compiled module) the large ones come from its output pool.

    Returns (container, per-modality numpy views the core writes into)."""
    shapes = [(prep.dense.shape, prep.dense.dtype)] if prep.kind == "dense" else [(a.shape, a.dtype) for a in prep.Xs]
    sizes = [int(np.prod(sh)) * np.dtype(dt).itemsize for sh, dt in shapes]
    call_bytes = sum(b for b in sizes if b >= POOLED_OUTPUT_BYTES)
    if prep.torch:
        import torch  # only reached when the caller passed torch tensors

        def alloc(shape, dtype):
            a = _empty(shape, dtype, call_bytes, core)
            return torch.from_numpy(a), a
    else:
        def alloc(shape, dtype):
            a = _empty(shape, dtype, call_bytes, core)
            return a, a

    if prep.kind == "dense":
        cont, view = alloc(prep.dense.shape, prep.dense.dtype)
        return cont, column_views(view, prep.dims)
    conts, views = [], []
    for a in prep.Xs:
        c, v = alloc(a.shape, a.dtype)
        conts.append(c)
        views.append(v)
    return prep.container(conts), views


def _byte_span(a: np.ndarray) -> tuple:
    """(lo, hi, address) of the bytes an array's elements occupy (bounds only, no memory read)."""
    ptr = lo = hi = a.__array_interface__["data"][0]
    if a.size == 0:
        return lo, lo, ptr
    for n, st in zip(a.shape, a.strides):
        if st < 0:
            lo += (n - 1) * st
        else:
            hi += (n - 1) * st
    return lo, hi + a.itemsize, ptr


def _shares(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact overlap test, run only on pairs whose byte spans intersect; a problem too hard
    to decide within the work bound counts as overlap."""
    try:
        return bool(np.shares_memory(a, b, max_work=1 << 20))
    except Exception:  # numpy TooHardError
        return True


def check_aliasing(outs: Sequence[np.ndarray], ins: Sequence[np.ndarray], out_names: Sequence[str],
                   in_names: Sequence[str], in_mods: Optional[Sequence[int]] = None) -> None:
    """No output may share memory with an input or with another output, except that
    ``outs[m]`` may be exactly ``ins[m]`` (same address, shape and strides: in-place
    completion of that modality). Inputs may overlap each other (they are only read).

    Cost: a sort of the byte spans (bounds only); the exact ``np.shares_memory`` runs only for
    pairs whose spans intersect."""
    in_mods = range(len(ins)) if in_mods is None else in_mods
    nodes = [(True, m, o, out_names[m]) for m, o in enumerate(outs)]
    nodes += [(False, m, x, nm) for m, x, nm in zip(in_mods, ins, in_names)]
    spans = sorted((_byte_span(n[2]) + (k,) for k, n in enumerate(nodes)), key=lambda t: t[0])
    ptrs = {k: p for _, _, p, k in spans}
    active: list = []
    for lo, hi, _, k in spans:
        if lo == hi:
            continue
        active = [(h, j) for h, j in active if h > lo]
        is_out, m, a, _ = nodes[k]
        for _, j in active:
            o2, m2, b, _ = nodes[j]
            if not (is_out or o2):
                continue
            if (is_out != o2 and m == m2 and ptrs[k] == ptrs[j] and a.shape == b.shape and a.strides == b.strides
                    and a.dtype == b.dtype):
                continue  # out[m] is exactly X[m]: in-place
            if _shares(a, b):
                first, second = sorted([nodes[k], nodes[j]], key=lambda t: (not t[0], t[1]))
                if first[0] and second[0]:
                    raise ValueError(f"{first[3]} and {second[3]} share memory: every output needs its own buffer")
                raise ValueError(f"{first[3]} overlaps {second[3]}: an output may be exactly its own modality's "
                                 "input (in-place) but must not otherwise share memory with any input")
        active.append((hi, k))


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.shape == b.shape
            and a.strides == b.strides and a.dtype == b.dtype)


def column_views(a: Any, dims: Sequence[int]) -> list:
    """Per-modality views of the last axis of ``a`` (numpy or torch, 1-D or 2-D), split
    at the cumulative ``dims``: the one place that cuts a dense row into modalities."""
    offs = np.cumsum([0, *dims])
    return [a[..., int(offs[m]):int(offs[m + 1])] for m in range(len(dims))]


def out_parts(prep: Any, out: Any) -> list:
    """``out=`` checked for the input's container kind: one 2-D array for a dense X, a list
    of one array per modality otherwise. Returns (array, name for errors, input it mirrors)
    per part; the arrays themselves are checked by the caller (host or device)."""
    if prep.kind == "dense":
        if isinstance(out, (list, tuple)):
            raise TypeError("out must be one 2-D array like X")
        return [(out, "out", prep.dense)]
    if not isinstance(out, (list, tuple)) or len(out) != len(prep.Xs):
        raise TypeError(f"out must be a list of {len(prep.Xs)} arrays, one per modality")
    return [(o, f"out[{m}]", x) for m, (o, x) in enumerate(zip(out, prep.Xs))]


def use_out(prep: Prepared, out: Any) -> tuple:
    """Caller-given output arrays (``transform(..., out=...)``): same container kind, shapes
    and dtypes as the input, writeable; ``out`` may be the input itself (in-place fill of
    the missing slots) but must not otherwise overlap any input or any other output.
    Returns like :func:`new_like`."""
    def arr(o, what, like):
        a = to_numpy(o, what)
        want = like.dtype.newbyteorder("=")
        if a.shape != like.shape or a.dtype != want or not a.dtype.isnative:
            raise ValueError(f"{what} must have shape {like.shape} and dtype {want} (native byte order), got "
                             f"{a.shape} {a.dtype}")
        if not a.flags.writeable:
            raise ValueError(f"{what} is read-only")
        if (a.shape[1] > 1 and a.strides[1] != a.itemsize) or a.strides[0] < 0:
            raise ValueError(f"{what} must have contiguous rows")
        return a

    views = [arr(o, what, like) for o, what, like in out_parts(prep, out)]
    if prep.kind == "dense":
        a = views[0]
        ins = [prep.dense] + [x for x in (_maybe_numpy(o) for o in prep.originals)
                              if x is not None and not _same_view(x, prep.dense)]
        check_aliasing([a], ins, ["out"], ["X"] * len(ins), [0] * len(ins))
        return out, column_views(a, prep.dims)
    M = len(views)
    ins, mods = list(prep.Xs), list(range(M))
    for m, o in enumerate(prep.originals):  # the caller's arrays where a converted copy is read
        x = _maybe_numpy(o)
        if x is not None and not _same_view(x, prep.Xs[m]):
            ins.append(x)
            mods.append(m)
    check_aliasing(views, ins, [f"out[{m}]" for m in range(M)], [f"modality {m} of X" for m in mods], mods)
    return out, views


def _maybe_numpy(x: Any) -> Optional[np.ndarray]:
    """The caller's original input as numpy (for the overlap check), or None."""
    try:
        a = to_numpy(x, "X")
    except (TypeError, ValueError):
        return None
    return a if isinstance(a, np.ndarray) and a.ndim == 2 else None


def mask_out(prep: Prepared, m: np.ndarray):
    """A boolean mask in the caller's world (torch tensor for torch inputs)."""
    if prep.torch:
        import torch

        return torch.from_numpy(m)
    return m


# ----------------------------------------------------------------------------- error hints
_MASK_HINT = ("; True (or 1) in the mask means observed: if your mask marks the missing slots, invert it "
              "(~mask, or 1 - mask)")


def _all_nan(row: Any) -> bool:
    return bool((row != row).all())  # numpy or torch, no import


def _all_finite(row: Any) -> bool:
    return bool((row - row == 0).all())  # x - x is NaN exactly for NaN and inf


def inverted_mask_hint(Xs: Sequence[Any], mask_given: bool, row: int, m: Optional[int] = None) -> str:
    """A hint when the presence mask looks inverted at ``row``: for a non-finite observed
    slot (``m`` given), the whole row of modality m is NaN; for a row marked empty
    (``m`` None), some modality of it holds only finite values. '' otherwise."""
    if not mask_given or row < 0:
        return ""
    try:
        if m is not None:
            return _MASK_HINT if _all_nan(Xs[m][row]) else ""
        return _MASK_HINT if any(_all_finite(x[row]) for x in Xs) else ""
    except Exception:  # a hint is never worth a second error
        return ""


def explain(exc: ValueError, Xs: Sequence[Any], mask_given: bool, r0: int = 0) -> ValueError:
    """``exc`` (the core's 'NaN or inf in an observed slot: row i of modality m ...'), with the
    inverted-mask hint appended where it applies; rows of ``Xs`` start at row ``r0``."""
    import re

    msg = str(exc)
    hit = re.search(r"observed slot: row (\d+) of modality (\d+)", msg)
    if hit is None:
        return exc
    hint = inverted_mask_hint(Xs, mask_given, int(hit.group(1)) - r0, int(hit.group(2)))
    return ValueError(msg + hint) if hint else exc
