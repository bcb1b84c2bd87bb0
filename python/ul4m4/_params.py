"""The one place where the estimator's parameters are checked (type and range).

Every entry point that takes them goes through :func:`check_params` before it reads any
data: ``UL4M4Imputer.fit`` / ``set_params`` / ``transform`` / ``predict``, the model
loader (a file's header), ``outofcore.fit_streaming`` and friends, ``dask.fit`` /
``dask.transform`` and the command line (which builds an estimator). A bad value raises
ValueError naming the parameter, so no out-of-range int ever reaches the compiled core
(where pybind11 would refuse it with "incompatible function arguments" after the data's
statistics pass, or C++ would wrap it).

Ranges are those of the core's types: ``n_clusters`` up to 2**31 - 1 (labels are int32),
``n_init`` and ``max_iter`` up to 2**31 - 1 (C int), ``chunk_size`` up to 2**63 - 1 (a
value larger than the rows is clamped to them: one chunk), ``random_state`` ints in
[0, 2**64) (the uint64 seed). ``n_threads`` is any int >= 1 and is clamped by
:func:`resolve_threads` to :func:`max_threads`.
"""
from __future__ import annotations

import os
from numbers import Integral, Real
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from . import _core

__all__ = ["check_param", "check_params", "check_init", "resolve_threads", "max_threads", "seed_from",
           "chunk_for", "PARAM_NAMES", "FILE_PARAMS"]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
UINT64_LIMIT = 2**64

#: The constructor's parameters, in order.
PARAM_NAMES = ("n_clusters", "init", "n_init", "max_iter", "tol", "algorithm", "completion", "temperature_scale",
               "temperature", "empty_rows", "modality_dims", "missing_values", "random_state", "n_threads",
               "chunk_size", "device", "verbose")
#: The parameters a model file's header stores (init and random_state only matter to fit).
FILE_PARAMS = tuple(p for p in PARAM_NAMES if p not in ("init", "random_state"))


def _is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _int(name: str, v: Any, lo: int, hi: int) -> None:
    if not _is_int(v) or int(v) < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if int(v) > hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}] (the compiled core's range), got {v!r}")


def _positive_finite(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, Real) or not (float(v) > 0 and np.isfinite(float(v))):
        raise ValueError(f"{name} must be a finite float > 0, got {v!r}")


def check_init(init: Any) -> None:
    if isinstance(init, str):
        if init != "k-means++":
            raise ValueError(f"init must be 'k-means++' or a pair (centres, presence_mask), got {init!r}")
        return
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise ValueError("init must be 'k-means++' or a pair (centres, presence_mask)")


def _check_random_state(v: Any) -> None:
    if v is None or isinstance(v, (np.random.Generator, np.random.RandomState)):
        return
    if _is_int(v) and int(v) >= 0:
        if int(v) >= UINT64_LIMIT:
            raise ValueError(f"random_state must be an int in [0, 2**64) (the seed is a uint64), got {v!r}")
        return
    raise ValueError(f"random_state must be None, a non-negative int or a numpy Generator, got {v!r}")


def _check_modality_dims(v: Any) -> None:
    if v is None:
        return
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable) or isinstance(v, Mapping):
        raise ValueError(f"modality_dims must be None or a sequence of positive ints, got {v!r}")
    dims = list(v)
    if not 1 <= len(dims) <= 64:
        raise ValueError(f"modality_dims must have 1 to 64 entries (one per modality), got {len(dims)}")
    for d in dims:  # positivity is checked with X's columns (_arrays.prepare) or the file's widths
        if not _is_int(d) or int(d) > INT64_MAX:
            raise ValueError(f"modality_dims must be positive ints (widths of the column blocks), got {d!r} "
                             f"({type(d).__name__}) in {dims!r}")


def check_param(name: str, value: Any) -> None:
    """Raise ValueError (naming ``name``) unless ``value`` is valid for that parameter."""
    v = value
    if name == "n_clusters":
        _int(name, v, 1, INT32_MAX)
    elif name in ("n_init",):
        _int(name, v, 1, INT32_MAX)
    elif name == "max_iter":
        _int(name, v, 0, INT32_MAX)
    elif name == "chunk_size":
        _int(name, v, 1, INT64_MAX)
    elif name == "n_threads":
        if v is not None:
            if not _is_int(v) or int(v) < 1:
                raise ValueError(f"n_threads must be None or a positive int, got {v!r}")
    elif name == "tol":
        if isinstance(v, bool) or not isinstance(v, Real) or not float(v) >= 0:
            raise ValueError(f"tol must be a float >= 0, got {v!r}")
    elif name == "algorithm":
        if not (isinstance(v, str) and v in ("auto", "lloyd", "bounded")):
            raise ValueError(f"algorithm must be 'auto', 'lloyd' or 'bounded', got {v!r}")
    elif name == "completion":
        if not (isinstance(v, str) and v in ("greedy", "soft", "auto")):
            raise ValueError(f"completion must be 'greedy', 'soft' or 'auto', got {v!r}")
    elif name == "temperature_scale":
        _positive_finite(name, v)
    elif name == "temperature":
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, Real) or not (float(v) > 0 and np.isfinite(float(v))):
                raise ValueError(f"temperature must be None or a finite float > 0, got {v!r}")
    elif name == "empty_rows":
        if not (isinstance(v, str) and v in ("error", "mean")):
            raise ValueError(f"empty_rows must be 'error' or 'mean', got {v!r}")
    elif name == "modality_dims":
        _check_modality_dims(v)
    elif name == "missing_values":
        if isinstance(v, bool) or not isinstance(v, Real):
            raise ValueError(f"missing_values must be a number (np.nan by default, e.g. 0 for all-zero absent "
                             f"embeddings), got {v!r}")
    elif name == "random_state":
        _check_random_state(v)
    elif name == "init":
        check_init(v)
    elif name == "device":
        from . import _gpu

        if not isinstance(v, str):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {v!r}")
        _gpu.check_device(v)
    elif name == "verbose":
        if not isinstance(v, Integral) or int(v) < 0:
            raise ValueError(f"verbose must be an int >= 0 (or a bool), got {v!r}")
    else:
        raise ValueError(f"invalid parameter {name!r} for UL4M4Imputer; valid: {sorted(PARAM_NAMES)}")


def check_params(params: Mapping[str, Any], names: Optional[Iterable[str]] = None) -> None:
    """check_param on each of ``names`` (default: every key of ``params``)."""
    for name in (params if names is None else names):
        check_param(name, params[name])


# ----------------------------------------------------------------------------- use
def max_threads() -> int:
    """The most threads a pass uses: min(4 x the CPUs OpenMP may run on, the OpenMP thread
    limit). The compiled core clamps to the same bound; results do not depend on it."""
    return int(_core.max_threads())


def resolve_threads(n_threads: Optional[int]) -> int:
    """Threads a pass runs on. ``None``: what OpenMP would use (OMP_NUM_THREADS /
    threadpoolctl honoured), at most the CPUs this process may run on. An int: that many,
    at most :func:`max_threads` (asking for more is not an error: the results are the same,
    and thousands of threads would only exhaust the address space)."""
    check_param("n_threads", n_threads)
    if n_threads is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = os.cpu_count() or 1
        return max(1, min(_core.openmp_max_threads(), cpus))
    return int(min(int(n_threads), max_threads()))


def chunk_for(chunk_size: int, n_rows: int) -> int:
    """``chunk_size`` (checked) clamped to [1, n_rows]: a chunk longer than the data is the
    whole data, and the core never sees a size that could overflow its arithmetic."""
    check_param("chunk_size", chunk_size)
    return int(max(1, min(int(chunk_size), int(n_rows))))


def seed_from(random_state: Any) -> int:
    """The uint64 seed of k-means++ (and of sampling) from a checked ``random_state``."""
    check_param("random_state", random_state)
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    return int(random_state)
