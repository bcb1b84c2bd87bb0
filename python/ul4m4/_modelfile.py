"""The model file: the one writer and the one loader (``UL4M4Imputer.save`` / ``load`` and
the command line use them). The format and what a file is trusted for are in
docs/model-file.md.

The loader validates everything before anything uses it and raises ValueError naming the
member or header field for every defect:

- only the known members are read, each after its npy header (dtype, shape) has been
  checked against the zip directory's uncompressed size and the memory budget; unknown
  members are never decompressed; ``labels`` (one int per training row, not needed by
  transform) is read on first access of ``labels_``;
- the header's fields are type-checked; its ``params`` go through ``_params`` exactly as
  the constructor's do;
- K >= 1, shapes agree, mean finite, scale finite and above the sigma floor, centres
  finite where present; then the compiled core builds its model, which checks the same
  and more (float32 range) on its side.

The memory budget (:func:`memory_budget`: the environment variable
``UL4M4_MODEL_BUDGET_MB``, default :data:`DEFAULT_BUDGET_BYTES` = 1 GiB) bounds both what a
file may make the loader allocate (the model's arrays) and the K x K tables of greedy
completion, which are built only when a greedy completion runs (:func:`check_table_budget`).
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from numbers import Real
from pathlib import Path
from typing import Any, Dict

import numpy as np

from . import _core
from ._params import FILE_PARAMS, INT32_MAX, check_param

__all__ = ["FORMAT_VERSION", "MAGIC", "DEFAULT_BUDGET_BYTES", "memory_budget", "check_table_budget",
           "state_arrays", "write", "read", "from_state"]

FORMAT_VERSION = 1
MAGIC = "ul4m4-model"
#: Default memory budget of a model (bytes): its arrays at load, and greedy completion's K x K tables.
DEFAULT_BUDGET_BYTES = 1 << 30
_BUDGET_ENV = "UL4M4_MODEL_BUDGET_MB"
_MAX_HEADER_BYTES = 1 << 20  # the JSON header member (a few hundred bytes in practice)
_MAX_MODALITIES = 64


def memory_budget() -> int:
    """Bytes a model may cost: ``UL4M4_MODEL_BUDGET_MB`` (a positive number of MiB) or 1 GiB."""
    raw = os.environ.get(_BUDGET_ENV, "").strip()
    if raw:
        try:
            mb = float(raw)
        except ValueError:
            raise ValueError(f"{_BUDGET_ENV}={raw!r}: expected a number of MiB") from None
        if not (mb > 0 and math.isfinite(mb)):
            raise ValueError(f"{_BUDGET_ENV}={raw!r}: expected a positive number of MiB")
        return int(mb * (1 << 20))
    return DEFAULT_BUDGET_BYTES


def table_bytes(K: int, M: int) -> int:
    """Bytes of greedy completion's K x K tables: f (K x K x M float64) plus one missing
    pattern's tables (3 K x K + K float64), which each worker thread holds at least once."""
    return 8 * K * K * M + 8 * (3 * K * K + K)


def check_table_budget(K: int, M: int, completion: str) -> None:
    """ValueError when greedy completion with K centres and M modalities would need more
    than :func:`memory_budget` for its K x K tables (soft completion needs none)."""
    if completion != "greedy":
        return
    need, budget = table_bytes(int(K), int(M)), memory_budget()
    if need > budget:
        raise ValueError(
            f"greedy completion with K={K} centres and M={M} modalities needs {need / 2**20:.0f} MiB of K x K "
            f"tables, above the memory budget of {budget / 2**20:.0f} MiB; use completion='soft' (no such "
            f"table), or raise the budget with the environment variable {_BUDGET_ENV}")


# ============================================================================ writing
def state_arrays(imp) -> Dict[str, np.ndarray]:
    """The members of a fitted estimator's model file (header first)."""
    imp._check_fitted()
    params = {k: getattr(imp, k) for k in FILE_PARAMS}
    if params.get("modality_dims") is not None:
        params["modality_dims"] = [int(d) for d in params["modality_dims"]]
    for k in ("n_clusters", "n_init", "max_iter", "chunk_size", "verbose"):
        params[k] = int(params[k])
    if params.get("n_threads") is not None:
        params["n_threads"] = int(params["n_threads"])
    for k in ("tol", "temperature_scale"):
        params[k] = float(params[k])
    if params.get("temperature") is not None:
        params["temperature"] = float(params["temperature"])
    mv = float(params["missing_values"])
    if np.isnan(mv):
        del params["missing_values"]  # the default; JSON has no NaN (absent = the default on load)
    else:
        params["missing_values"] = mv
    header = {"magic": MAGIC, "format_version": FORMAT_VERSION, "ul4m4_version": _core.__version__,
              "params": params, "inertia": float(imp.inertia_), "n_iter": int(imp.n_iter_),
              "n_modalities": int(imp.n_modalities_)}
    header.update(_choice_header(imp))
    arrays = {"header": np.array(json.dumps(header)), "center_mask": np.asarray(imp.center_mask_, dtype=bool),
              "labels": np.asarray(imp.labels_, dtype=np.int32)}
    for m in range(imp.n_modalities_):
        arrays[f"mean_{m}"] = np.asarray(imp.mean_[m], dtype=np.float64)
        arrays[f"scale_{m}"] = np.asarray(imp.scale_[m], dtype=np.float64)
        arrays[f"centers_{m}"] = np.asarray(imp.cluster_centers_[m], dtype=np.float64)
    return arrays


def write(imp, path: "str | os.PathLike") -> None:
    """Write the fitted model to ``path`` (an .npz: no pickle), atomically."""
    arrays = state_arrays(imp)  # raises NotFittedError before any file is created
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ============================================================================ reading
def _header(fn, fp):
    try:
        return fn(fp, max_header_size=10000)
    except TypeError as exc:  # numpy < 1.24: no max_header_size (its headers are bounded anyway)
        if "max_header_size" not in str(exc):
            raise
        return fn(fp)


class _Member:
    """One npy member of the archive, its header checked, its data not yet read."""

    def __init__(self, zf: zipfile.ZipFile, name: str, where: str):
        self.name, self.where = name, where
        try:
            self.info = zf.getinfo(name + ".npy")
            with zf.open(self.info) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = _header(np.lib.format.read_array_header_1_0, fp)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = _header(np.lib.format.read_array_header_2_0, fp)
                else:
                    raise ValueError(f"npy version {version} is not supported")
                self.offset = fp.tell()
        except (KeyError, MemoryError):
            raise
        except Exception as exc:
            raise ValueError(f"{where}: member {name!r} is not a readable npy array ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biufU" or dtype.subdtype is not None or dtype.names:
            raise ValueError(f"{where}: member {name!r} has unsupported dtype {dtype}")
        self.shape, self.fortran, self.dtype = tuple(int(s) for s in shape), bool(fortran), dtype
        self.nbytes = int(np.prod(self.shape, dtype=object)) * dtype.itemsize
        if self.offset + self.nbytes != self.info.file_size:
            raise ValueError(f"{where}: member {name!r} is truncated or padded: its header declares "
                             f"{self.nbytes} data bytes, the archive holds {self.info.file_size - self.offset}")

    def read(self, zf: zipfile.ZipFile) -> np.ndarray:
        try:
            with zf.open(self.info) as fp:
                fp.read(self.offset)
                buf = fp.read(self.nbytes)
                fp.read(1)  # reaching the end checks the member's CRC
        except MemoryError:
            raise
        except Exception as exc:
            raise ValueError(f"{self.where}: member {self.name!r} cannot be read ({exc})") from None
        if len(buf) != self.nbytes:
            raise ValueError(f"{self.where}: member {self.name!r} is truncated")
        a = np.frombuffer(buf, dtype=self.dtype)
        return a.reshape(self.shape, order="F" if self.fortran else "C")


class _LazyLabels:
    """``labels`` of a loaded model: read (and checked) on the first access of ``labels_``."""

    def __init__(self, path: str, K: int):
        self.path, self.K = path, K

    def read(self) -> np.ndarray:
        try:
            with zipfile.ZipFile(self.path) as zf:
                mem = _Member(zf, "labels", self.path)
                _expect(mem, self.path, ndim=1, kinds="iu")
                a = mem.read(zf)
        except KeyError:
            raise ValueError(f"{self.path}: member 'labels' is missing") from None
        except (OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{self.path}: cannot read member 'labels' ({exc})") from None
        return _labels(a, self.K, self.path)


def _labels(a: np.ndarray, K: int, where: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{where}: member 'labels' must be a 1-D integer array, got {a.dtype} {a.shape}")
    if a.size and (int(a.min()) < -1 or int(a.max()) >= K):
        raise ValueError(f"{where}: member 'labels' holds values outside [-1, {K})")
    return a.astype(np.int32)


def _expect(mem: _Member, where: str, ndim: int, kinds: str) -> None:
    if len(mem.shape) != ndim:
        raise ValueError(f"{where}: member {mem.name!r} must be {ndim}-D, got shape {mem.shape}")
    if mem.dtype.kind not in kinds or (mem.dtype.kind == "f" and mem.dtype.itemsize > 8):
        raise ValueError(f"{where}: member {mem.name!r} has dtype {mem.dtype}")


def read(path: "str | os.PathLike"):
    """The estimator stored in ``path``; ValueError for anything but a valid model file
    (FileNotFoundError when there is no such file)."""
    where = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{where}: no such model file")
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, zipfile.BadZipFile) and os.path.isdir(path):
            raise ValueError(f"{where}: is a directory, not a ul4m4 model file") from None
        raise ValueError(f"{where}: not a readable ul4m4 model file ({exc})") from None
    with zf:
        try:
            names = set(zf.namelist())
        except Exception as exc:  # pragma: no cover - namelist only reads the parsed directory
            raise ValueError(f"{where}: not a readable ul4m4 model file ({exc})") from None

        def member(name: str) -> _Member:
            if name + ".npy" not in names:
                raise ValueError(f"{where}: incomplete or incompatible ul4m4 model file: member {name!r} is missing")
            return _Member(zf, name, where)

        nohead = f"{where}: not a ul4m4 model file (no readable header): "
        if "header.npy" not in names:
            raise ValueError(nohead + "member 'header' is missing")
        try:
            hm = member("header")
        except ValueError as exc:
            raise ValueError(nohead + str(exc).split(": ", 1)[-1]) from None
        if hm.dtype.kind != "U" or hm.shape != () or hm.nbytes > _MAX_HEADER_BYTES:
            raise ValueError(nohead + f"member 'header' must be one JSON string, got {hm.dtype} {hm.shape}")
        header = _parse_header(str(hm.read(zf)[()]), where)
        M = header["n_modalities"]
        mem = {"center_mask": member("center_mask")}
        for m in range(M):
            for k in ("mean", "scale", "centers"):
                mem[f"{k}_{m}"] = member(f"{k}_{m}")
        _expect(mem["center_mask"], where, 2, "b")
        K = mem["center_mask"].shape[0]
        if K < 1:
            raise ValueError(f"{where}: member 'center_mask' has K = {K} centres; a model needs at least one")
        if mem["center_mask"].shape[1] != M:
            raise ValueError(f"{where}: member 'center_mask' has shape {mem['center_mask'].shape}; expected "
                             f"(K, n_modalities) = (K, {M})")
        dims = []
        for m in range(M):
            _expect(mem[f"mean_{m}"], where, 1, "f")
            _expect(mem[f"scale_{m}"], where, 1, "f")
            _expect(mem[f"centers_{m}"], where, 2, "f")
            d = mem[f"mean_{m}"].shape[0]
            if d < 1:
                raise ValueError(f"{where}: member 'mean_{m}' is empty (width 0)")
            bad = f"{where}: inconsistent array shapes for modality {m}: member "
            if mem[f"scale_{m}"].shape != (d,):
                raise ValueError(bad + f"'scale_{m}' has shape {mem[f'scale_{m}'].shape}; expected ({d},)")
            if mem[f"centers_{m}"].shape != (K, d):
                raise ValueError(bad + f"'centers_{m}' has shape {mem[f'centers_{m}'].shape}; "
                                 f"expected (K, d) = ({K}, {d})")
            dims.append(d)
        # Every array is checked before any is read: the file's declared sizes must fit the budget.
        need = sum(8 * int(np.prod(x.shape, dtype=object)) for x in mem.values())
        budget = memory_budget()
        if need > budget:
            raise ValueError(f"{where}: the model's arrays need {need / 2**20:.0f} MiB, above the memory budget of "
                             f"{budget / 2**20:.0f} MiB (raise it with the environment variable {_BUDGET_ENV})")
        _expect(member("labels"), where, 1, "iu")  # its data are read on first use of labels_
        arrays = {k: v.read(zf) for k, v in mem.items()}
    return from_state(header, arrays, dims, where, labels=_LazyLabels(os.path.abspath(where), K))


def _field(header: dict, name: str, where: str) -> Any:
    if name not in header:
        raise ValueError(f"{where}: header field {name!r} is missing")
    return header[name]


def _parse_header(text: str, where: str) -> dict:
    try:
        header = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: not a ul4m4 model file (no readable header): member 'header' is not valid "
                         f"JSON ({str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: member 'header' must be a JSON object")
    if header.get("magic") != MAGIC:
        raise ValueError(f"{where}: not a ul4m4 model file (header field 'magic' is not {MAGIC!r})")
    v = _field(header, "format_version", where)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{where}: header field 'format_version' must be an integer, got {v!r}")
    if v != FORMAT_VERSION:
        raise ValueError(f"{where}: model format version {v} is not supported by this ul4m4 "
                         f"(it reads version {FORMAT_VERSION})")
    ver = header.get("ul4m4_version")
    if ver is not None and not isinstance(ver, str):
        raise ValueError(f"{where}: header field 'ul4m4_version' must be a string, got {ver!r}")
    M = _field(header, "n_modalities", where)
    if not isinstance(M, int) or isinstance(M, bool) or not 1 <= M <= _MAX_MODALITIES:
        raise ValueError(f"{where}: header field 'n_modalities' must be an int in [1, 64], got {M!r}")
    inertia = _field(header, "inertia", where)
    if isinstance(inertia, bool) or not isinstance(inertia, Real) or not (math.isfinite(inertia) and inertia >= 0):
        raise ValueError(f"{where}: header field 'inertia' must be a finite number >= 0, got {inertia!r}")
    n_iter = _field(header, "n_iter", where)
    if not isinstance(n_iter, int) or isinstance(n_iter, bool) or not 0 <= n_iter <= INT32_MAX:
        raise ValueError(f"{where}: header field 'n_iter' must be an int >= 0, got {n_iter!r}")
    params = _field(header, "params", where)
    if not isinstance(params, dict):
        raise ValueError(f"{where}: header field 'params' must be a JSON object, got {params!r}")
    for k, val in params.items():
        if k not in FILE_PARAMS:
            raise ValueError(f"{where}: incomplete or incompatible ul4m4 model file: header field 'params' has "
                             f"unknown parameter {k!r}")
        try:
            check_param(k, val)
        except ValueError as exc:
            raise ValueError(f"{where}: header field 'params.{k}': {exc}") from None
    return header


def from_state(header: dict, arrays: Dict[str, np.ndarray], dims, where: str, labels: Any):
    """The estimator from a parsed header and the model's arrays (shapes already checked)."""
    from ._imputer import UL4M4Imputer

    M = header["n_modalities"]
    params = header["params"]
    md = params.get("modality_dims")
    if md is not None and tuple(int(d) for d in md) != tuple(dims):
        raise ValueError(f"{where}: header field 'params.modality_dims' {list(md)} does not match the widths "
                         f"of the arrays {list(dims)}")
    H = np.ascontiguousarray(arrays["center_mask"], dtype=bool)
    K = H.shape[0]
    params = dict(params)
    if params.setdefault("n_clusters", K) != K:
        raise ValueError(f"{where}: header field 'params.n_clusters' is {params['n_clusters']} but the file holds "
                         f"K = {K} centres (member 'center_mask')")
    empty = np.flatnonzero(~H.any(axis=1))
    if empty.size:
        raise ValueError(f"{where}: member 'center_mask': centre {int(empty[0])} carries no modality")
    floor = float(_core.SIGMA_FLOOR)
    mean, scale, centres = [], [], []
    for m in range(M):
        mu = np.array(arrays[f"mean_{m}"], dtype=np.float64)
        sd = np.array(arrays[f"scale_{m}"], dtype=np.float64)
        c = np.array(arrays[f"centers_{m}"], dtype=np.float64)
        if not np.isfinite(mu).all():
            raise ValueError(f"{where}: member 'mean_{m}' holds NaN or inf")
        bad = ~(np.isfinite(sd) & (sd > floor))
        if bad.any():
            raise ValueError(f"{where}: member 'scale_{m}' must be finite and > {floor:g} (the sigma floor: a fitted "
                             f"scale is 1 or above it); feature {int(np.flatnonzero(bad)[0])} holds "
                             f"{sd[bad][0]!r}")
        if not np.isfinite(c[H[:, m]]).all():
            raise ValueError(f"{where}: member 'centers_{m}' holds NaN or inf in a present centre")
        c[~H[:, m]] = np.nan
        mean.append(mu)
        scale.append(sd)
        centres.append(c)
    try:
        obj = UL4M4Imputer(**params)
    except TypeError as exc:  # pragma: no cover - keys were checked against FILE_PARAMS
        raise ValueError(f"{where}: header field 'params': {exc}") from None
    obj.mean_, obj.scale_, obj.cluster_centers_, obj.center_mask_ = mean, scale, centres, H
    if isinstance(labels, np.ndarray):
        obj.labels_ = _labels(labels, K, where)
    else:
        obj._labels_src = labels
    obj.inertia_ = float(header["inertia"])
    obj.n_iter_ = int(header["n_iter"])
    obj.history_ = []
    _set_choice(obj, header, where)
    obj.n_modalities_ = M
    obj.modality_dims_ = tuple(int(d) for d in dims)
    if obj.modality_dims is not None:
        obj.n_features_in_ = int(sum(dims))
    obj._model = None
    obj._gpu_models = None
    try:
        obj._compiled()  # the core checks the model too (float32 range, raw-space centres)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return obj


# The completion choice (completion_, temperature_scale_, completion_scores_) is one optional
# header field, "completion_choice"; a file without it (older, or fitted another way) gets the
# constructor's completion when it is not 'auto', and no choice otherwise.
def _choice_header(imp) -> dict:
    if not hasattr(imp, "completion_"):
        return {}
    return {"completion_choice": {"completion": imp.completion_, "temperature_scale": float(imp.temperature_scale_),
                                  "scores": getattr(imp, "completion_scores_", None)}}


def _set_choice(obj, header: dict, where: str) -> None:
    choice = header.get("completion_choice")
    obj.completion_scores_ = None
    if choice is None:
        if obj.completion != "auto":
            obj.completion_, obj.temperature_scale_ = obj.completion, float(obj.temperature_scale)
        return
    try:
        completion, ts, scores = choice["completion"], choice["temperature_scale"], choice["scores"]
        check_param("completion", completion)
        if completion == "auto":
            raise ValueError("the choice must be 'greedy' or 'soft'")
        check_param("temperature_scale", ts)
        if scores is not None:
            scores = [dict(completion=str(d["completion"]), error=float(d["error"]),
                           temperature_scale=None if d["temperature_scale"] is None else float(d["temperature_scale"]))
                      for d in scores]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: header field 'completion_choice' is unreadable ({exc})") from None
    obj.completion_, obj.temperature_scale_, obj.completion_scores_ = completion, float(ts), scores
