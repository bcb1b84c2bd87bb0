"""ul4m4: make multimodal datasets whole.

Fills missing modality embeddings without labels by the UL4M4 method: modality-specific
normalisation, a partial-modality distance, masked k-means on it, and greedy (or soft)
completion from the cluster centres. The hot paths run in a compiled C++ core with
runtime-dispatched SIMD and OpenMP threads.

>>> import numpy as np, ul4m4
>>> rng = np.random.default_rng(0)
>>> text, audio = rng.normal(size=(100, 8)), rng.normal(size=(100, 4))
>>> mask = np.ones((100, 2), bool); mask[::3, 1] = False
>>> imp = ul4m4.UL4M4Imputer(n_clusters=4, random_state=0).fit([text, audio], mask=mask)
>>> filled, imputed, unfilled = imp.transform([text, audio], mask=mask, return_masks=True)
>>> int(imputed.sum()), int(unfilled.sum())
(34, 0)

Submodules, imported on first use (``import ul4m4`` loads neither dask nor any other
optional dependency): ``ul4m4.outofcore`` (data larger than memory), ``ul4m4.dask`` (a
Dask cluster), ``ul4m4.datasets``, ``ul4m4.masking``, ``ul4m4.evaluation`` (the demo's
protocol), ``ul4m4.cli`` and ``ul4m4.examples``.
"""
from __future__ import annotations

import os as _os
import warnings as _warnings

from . import _core
from ._imputer import ConvergenceWarning, NotFittedError, UL4M4Imputer

__version__ = _core.__version__

__all__ = [
    "UL4M4Imputer",
    "ConvergenceWarning",
    "NotFittedError",
    "simd_level",
    "max_simd_level",
    "set_simd_level",
    "available_simd_levels",
    "threading_backend",
    "cuda_available",
    "release_output_pool",
    "__version__",
]

#: Submodules reachable as attributes of the package, imported on first access.
_SUBMODULES = ("outofcore", "dask", "datasets", "masking", "evaluation", "cli", "examples")


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")  # also binds it as an attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


def simd_level() -> str:
    """The SIMD kernels in use: 'avx512', 'avx2' (x86-64), 'neon' (ARM64) or 'scalar'."""
    return _core.simd_level()


def max_simd_level() -> str:
    """The best SIMD level this CPU supports."""
    return _core.max_simd_level()


def available_simd_levels() -> list:
    """Every level this CPU can run, lowest first."""
    return list(_core.available_simd_levels())


def set_simd_level(level: str) -> None:
    """Force a SIMD level (a lower one than the CPU's best, e.g. for testing). Raises
    ValueError for an unknown level or one this CPU lacks. Also settable before import
    with the environment variable ``UL4M4_SIMD``. Not while another thread runs a fit or
    transform: a call takes its kernels, and the bounded fit its rounding margin, from the
    level in force."""
    _core.set_simd_level(level)


def threading_backend() -> str:
    """How this build of the compiled core runs threads: 'openmp', or 'threads' (its own
    thread pool, for builds without OpenMP). Both give the same results, bit for bit."""
    return _core.threading_backend()


def release_output_pool() -> None:
    """Give back to the system the memory kept for reuse by transform's fresh outputs.

    Outputs of 16 MiB or more come from a pool in the compiled core; when they are freed,
    up to the latest call's bytes are kept (marked reclaimable) so that the next call of the
    same size does not fault in new pages (docs/inputs-and-outputs.md, "Fresh outputs").
    Outputs still alive are not affected."""
    _core.release_output_pool()


def cuda_available() -> tuple:
    """(True, '') when the CUDA path can run: the CUDA module is built, a GPU and driver are
    visible, and PyTorch has CUDA. Otherwise (False, reason), the reason saying how to fix it."""
    from ._gpu import availability

    return availability()


_env_level = _os.environ.get("UL4M4_SIMD")
if _env_level:
    try:
        set_simd_level(_env_level.strip().lower())
    except ValueError as _exc:
        _warnings.warn(f"UL4M4_SIMD={_env_level!r} ignored: {_exc}", RuntimeWarning, stacklevel=2)
