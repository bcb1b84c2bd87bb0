"""The estimator: :class:`UL4M4Imputer` (scikit-learn conventions).

Python validates, converts and orchestrates; every pass over the data runs in the
compiled core (``ul4m4._core``) with the GIL released, or on a GPU (``ul4m4._cuda``,
through ``_gpu``) for CUDA tensors / ``device='cuda'``.
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from . import _core, _gpu
from ._arrays import Prepared, mask_out, new_like, prepare, use_out

__all__ = ["UL4M4Imputer", "ConvergenceWarning", "NotFittedError", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_MAGIC = "ul4m4-model"


class ConvergenceWarning(UserWarning):
    """The Lloyd loop stopped at ``max_iter`` before the labels settled."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


def effective_n_threads(n_threads: Optional[int]) -> int:
    """``None``: the threads OpenMP would use (OMP_NUM_THREADS / threadpoolctl honoured),
    at most the CPUs this process may run on."""
    if n_threads is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = os.cpu_count() or 1
        return max(1, min(_core.openmp_max_threads(), cpus))
    if isinstance(n_threads, bool) or not isinstance(n_threads, Integral) or n_threads < 1:
        raise ValueError(f"n_threads must be None or a positive int, got {n_threads!r}")
    return int(n_threads)


def _seed_from(random_state: Any) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(random_state, (np.random.Generator,)):
        return int(random_state.integers(0, 2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state)
    raise ValueError(f"random_state must be None, a non-negative int or a numpy Generator, got {random_state!r}")


class UL4M4Imputer:
    """Complete missing modalities by masked k-means on the partial-modality distance.

    Parameters
    ----------
    n_clusters : int
        Number of centres K.
    init : 'k-means++' or (centres, presence)
        Seeding. An explicit pair gives K initial centres in the data's raw space: a list of
        (K, d_m) arrays (NaN or anything where absent) and a (K, M) boolean presence mask.
        It forces ``n_init=1``.
    n_init : int
        k-means++ restarts; the run with the fewest unassignable rows, then the lowest
        inertia, is kept.
    max_iter : int
        Lloyd iterations at most.
    tol : float
        Stop when the largest centre shift (partial distance, z-space) is <= tol.
    algorithm : 'auto', 'lloyd' or 'bounded'
        'bounded' runs the same Lloyd iterations (same labels, centres and n_iter, bit for
        bit) but skips the rows whose distance bounds prove their label cannot change
        (docs/bounded-lloyd.md); its ``history_`` inertia is NaN except in the last
        iteration; it keeps N x K float32 bounds. 'auto' (default) is 'bounded' when
        4 * n_clusters <= the total width (the bounds then take at most a quarter of the
        float32 data, and a skipped row saves K full-width distances), else 'lloyd'. CUDA
        fits run 'lloyd'.
    completion : 'greedy' or 'soft'
        'greedy' is the paper's iterative greedy completion (with the anchored-pairs rule);
        'soft' fills a missing modality with a distance-weighted mean of the centres that
        carry it (ALGORITHM.md section 5b).
    temperature_scale : float
        Soft completion: T_i = temperature_scale * median over centres of D_A(i, j)^2.
        1 (default) is the safest for downstream classifiers; 1/16 gave the lowest
        reconstruction error on the data measured.
    temperature : float or None
        Soft completion: an absolute temperature (> 0) that overrides the per-row rule.
    empty_rows : 'error' or 'mean'
        Rows with no observed modality: an error (default), or accepted ('mean': ignored by
        fit, filled with the training mean and reported unfilled by transform).
    modality_dims : sequence of int or None
        For the scikit-learn form: X is one 2-D array made of M column blocks of these
        widths, with missing blocks all NaN.
    random_state : None, int or numpy Generator
        Seed of k-means++.
    n_threads : int or None
        Threads of the compiled core; None = what OpenMP may use on this process's CPUs.
        Results are bit-identical for any value.
    chunk_size : int
        Rows per work unit (scratch memory is O(threads x chunk_size x (d + K x M))). CPU
        only: the GPU sizes its row chunks from a byte budget (environment variable
        ``UL4M4_CUDA_CHUNK_MB``, default 256); results depend on neither.
    device : 'auto', 'cpu', 'cuda' or 'cuda:<index>'
        Where fit / transform / predict run. 'auto' (default): on the GPU when X holds
        PyTorch CUDA tensors (outputs are CUDA tensors on the same device), else on the CPU.
        'cuda': always on the GPU (host inputs are copied there and the results back); an
        error when the CUDA module or a GPU is missing (``ul4m4.cuda_available()`` says
        why), never a silent CPU fallback. 'cpu': always on the CPU; CUDA tensors are then
        an error (move them with ``.cpu()``). A model fitted on one device transforms on the
        other (fitted attributes are host numpy arrays either way). Labels, presence sets
        and completion decisions agree with the CPU; values to float32 precision. k-means++
        on the GPU draws the CPU's random numbers but may pick other rows where float32
        rounding moves a cumulative weight across a draw; explicit ``init`` is identical.
    verbose : int
        1 prints one line per Lloyd iteration.

    Attributes
    ----------
    mean_, scale_ : list of (d_m,) float64 arrays
        Per-modality normalisation fitted on the observed rows.
    cluster_centers_ : list of (K, d_m) float64 arrays
        Centres in normalised (z) space, NaN where a centre lacks a modality.
    center_mask_ : (K, M) bool array
        Which modalities each centre carries.
    labels_ : (n_samples,) int32 array
        Cluster of each training row; -1 for rows sharing no modality with any centre.
    inertia_ : float
        Sum of squared partial distances of labelled rows to their centre.
    n_iter_ : int
        Lloyd iterations run.
    history_ : list of dict
        Per iteration: inertia, n_changed, max_shift, seconds, skipped (the fraction of
        row-centre distances the bounded algorithm did not compute).
    """

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", n_init: int = 1,
                 max_iter: int = 300, tol: float = 1e-4, algorithm: str = "auto", completion: str = "greedy",
                 temperature_scale: float = 1.0, temperature: Optional[float] = None,
                 empty_rows: str = "error", modality_dims: Optional[Sequence[int]] = None,
                 random_state: Any = None, n_threads: Optional[int] = None, chunk_size: int = 256,
                 device: str = "auto", verbose: int = 0):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.algorithm = algorithm
        self.completion = completion
        self.temperature_scale = temperature_scale
        self.temperature = temperature
        self.empty_rows = empty_rows
        self.modality_dims = modality_dims
        self.random_state = random_state
        self.n_threads = n_threads
        self.chunk_size = chunk_size
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ sklearn plumbing
    @classmethod
    def _param_names(cls) -> List[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> "UL4M4Imputer":
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for UL4M4Imputer; valid: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {k: v.default for k, v in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{k}={getattr(self, k)!r}" for k in self._param_names()
                   if not (isinstance(getattr(self, k), str) and getattr(self, k) == defaults[k])
                   and getattr(self, k) is not defaults[k] and not _equal(getattr(self, k), defaults[k])]
        return f"UL4M4Imputer({', '.join(changed)})"

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        def pos_int(name, lo=1):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")

        pos_int("n_clusters")
        pos_int("n_init")
        pos_int("max_iter", 0)
        pos_int("chunk_size")
        if isinstance(self.tol, bool) or not isinstance(self.tol, Real) or not self.tol >= 0:
            raise ValueError(f"tol must be a float >= 0, got {self.tol!r}")
        if not isinstance(self.algorithm, str) or self.algorithm not in ("auto", "lloyd", "bounded"):
            raise ValueError(f"algorithm must be 'auto', 'lloyd' or 'bounded', got {self.algorithm!r}")
        self._check_completion(self.completion, self.temperature_scale, self.temperature)
        if self.empty_rows not in ("error", "mean"):
            raise ValueError(f"empty_rows must be 'error' or 'mean', got {self.empty_rows!r}")
        if not (isinstance(self.init, str) and self.init == "k-means++") and not (
                isinstance(self.init, (tuple, list)) and len(self.init) == 2):
            raise ValueError("init must be 'k-means++' or a pair (centres, presence_mask)")
        _gpu.check_device(self.device)

    @staticmethod
    def _check_completion(completion, temperature_scale, temperature):
        if completion not in ("greedy", "soft"):
            raise ValueError(f"completion must be 'greedy' or 'soft', got {completion!r}")
        if not isinstance(temperature_scale, Real) or not temperature_scale > 0 or not np.isfinite(temperature_scale):
            raise ValueError(f"temperature_scale must be a finite float > 0, got {temperature_scale!r}")
        if temperature is not None and (not isinstance(temperature, Real) or not temperature > 0
                                        or not np.isfinite(temperature)):
            raise ValueError(f"temperature must be None or a finite float > 0, got {temperature!r}")

    def _prepare(self, X: Any, mask: Any, nt: int) -> Prepared:
        dims = self.modality_dims
        prep = prepare(X, mask, dims, _core, nt, self.chunk_size)
        empty = np.flatnonzero(~prep.present.any(axis=1))
        self._check_empty(empty.size, empty[0] if empty.size else -1)
        return prep

    def _check_empty(self, n_empty: int, first: int) -> None:
        if n_empty and self.empty_rows == "error":
            raise ValueError(
                f"{n_empty} row(s) observe no modality (first: row {first}); there is nothing to "
                "match them on. Drop them, or pass empty_rows='mean' to fill them with the training mean"
            )

    def _prepare_cuda(self, X: Any, mask: Any) -> "_gpu.CudaPrepared":
        prep = _gpu.prepare(X, mask, self.modality_dims, self.device)
        self._check_empty(prep.scan["n_empty"], prep.scan["first_empty"])
        return prep

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this UL4M4Imputer is not fitted yet: call fit first")

    def _check_compatible(self, prep: Prepared) -> None:
        M = len(self.mean_)
        if len(prep.dims) != M:
            raise ValueError(f"X has {len(prep.dims)} modalities but the model was fitted on {M}")
        for m, (d, mu) in enumerate(zip(prep.dims, self.mean_)):
            if d != mu.shape[0]:
                raise ValueError(f"modality {m} has width {d} but the model was fitted with {mu.shape[0]}")

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, mask: Any = None,
            callback: Optional[Callable[..., Any]] = None) -> "UL4M4Imputer":
        """Fit normalisation and centres on X (list of (n, d_m) arrays, or one 2-D array
        with ``modality_dims``). ``mask`` is an (n, M) boolean presence mask; without it,
        absent rows must be all NaN. ``callback(iteration, inertia, n_changed, max_shift,
        seconds)`` is called after each Lloyd iteration and may return False to stop.
        ``y`` is ignored (scikit-learn pipelines pass it)."""
        _reject_mask_as_y(y)
        self._validate_params()
        cuda = _gpu.use_cuda(self.device, X, mask)
        if cuda:
            prep = self._prepare_cuda(X, mask)
            mu, sigma = _gpu.compute_stats(prep)
            eligible = prep.n - int(prep.scan["n_empty"])
        else:
            nt = effective_n_threads(self.n_threads)
            prep = self._prepare(X, mask, nt)
            chunk = int(self.chunk_size)
            mu, sigma = _core.compute_stats(prep.Xs, prep.present, nt, chunk)
            eligible = int(prep.present.any(axis=1).sum())
        K = int(self.n_clusters)
        if K > eligible:
            raise ValueError(f"n_clusters={K} is larger than the {eligible} rows with at least one observed modality")
        init_C = init_H = None
        n_init = int(self.n_init)
        if not isinstance(self.init, str):
            init_C, init_H = self._init_centres(self.init, mu, sigma, K)
            if n_init != 1:
                warnings.warn("explicit initial centres given: n_init is set to 1", RuntimeWarning, stacklevel=2)
                n_init = 1
        seed = _seed_from(self.random_state)

        def on_iter(it, inertia, n_changed, shift, secs):
            if self.verbose:
                print(f"[ul4m4] iter {it:4d}  inertia {inertia:.6g}  changed {n_changed}  "
                      f"shift {shift:.3g}  {secs:.3f}s", flush=True)
            if callback is not None:
                return callback(it, inertia, n_changed, shift, secs)
            return True

        use_cb = bool(self.verbose) or callback is not None
        if cuda:
            res = _gpu.kmeans(prep, mu, sigma, K, int(self.max_iter), float(self.tol), n_init, seed, init_C, init_H,
                              on_iter if use_cb else None)
        else:
            res = _core.kmeans(prep.Xs, prep.present, mu, sigma, K, int(self.max_iter), float(self.tol), n_init,
                               seed, init_C, init_H, on_iter if use_cb else None, nt, chunk,
                               self._algorithm_for(K, sum(prep.dims)))
        self.mean_ = list(mu)
        self.scale_ = list(sigma)
        self.cluster_centers_ = list(res["centres"])
        self.center_mask_ = np.asarray(res["H"], dtype=bool)
        self.labels_ = np.asarray(res["labels"], dtype=np.int32)
        self.inertia_ = float(res["inertia"])
        self.n_iter_ = int(res["n_iter"])
        self.history_ = [dict(iteration=h[0], inertia=h[1], n_changed=h[2], max_shift=h[3], seconds=h[4],
                              skipped=h[5] if len(h) > 5 else 0.0) for h in res["history"]]
        self.n_modalities_ = len(prep.dims)
        self.modality_dims_ = tuple(prep.dims)
        if prep.kind == "dense":
            self.n_features_in_ = int(sum(prep.dims))
        self._model = None
        self._gpu_models = None
        if not res["converged"] and self.n_iter_ == self.max_iter and self.max_iter > 0:
            warnings.warn(f"k-means stopped at max_iter={self.max_iter} before convergence; "
                          "increase max_iter or tol", ConvergenceWarning, stacklevel=2)
        return self

    def _algorithm_for(self, K: int, width: int) -> str:
        if self.algorithm == "auto":
            return "bounded" if 4 * K <= width else "lloyd"
        return self.algorithm

    @staticmethod
    def _init_centres(init, mu, sigma, K):
        C, H = init
        H = np.asarray(_host_array(H))
        if H.dtype != np.bool_:
            raise TypeError(f"init presence mask must be a boolean array, got dtype {H.dtype}")
        if H.ndim != 2 or H.shape != (K, len(mu)):
            raise ValueError(f"init presence mask must have shape (n_clusters, M) = {(K, len(mu))}, got {H.shape}")
        if not H.any(axis=1).all():
            raise ValueError(f"initial centre {int(np.flatnonzero(~H.any(axis=1))[0])} has no modality")
        if not isinstance(C, (list, tuple)) or len(C) != len(mu):
            raise ValueError(f"init centres must be a list of {len(mu)} arrays, one per modality")
        out = []
        for m, c in enumerate(C):
            c = np.asarray(_host_array(c), dtype=np.float64)
            if c.shape != (K, mu[m].shape[0]):
                raise ValueError(f"init centres of modality {m} must have shape {(K, mu[m].shape[0])}, got {c.shape}")
            if not np.isfinite(c[H[:, m]]).all():
                raise ValueError(f"init centres of modality {m} have NaN or inf in a present slot")
            z = np.where(H[:, m:m + 1], (np.where(H[:, m:m + 1], c, 0.0) - mu[m]) / sigma[m], 0.0)
            out.append(np.ascontiguousarray(z))
        return out, np.ascontiguousarray(H, dtype=np.uint8)

    # ------------------------------------------------------------------ inference
    def _compiled(self):
        self._check_fitted()
        if getattr(self, "_model", None) is None:
            self._model = _core.Model(self.mean_, self.scale_, self.cluster_centers_,
                                      np.ascontiguousarray(self.center_mask_, dtype=np.uint8))
        return self._model

    def transform(self, X: Any, *, mask: Any = None, return_masks: bool = False,
                  completion: Optional[str] = None, temperature_scale: Optional[float] = None,
                  temperature: Optional[float] = None, out: Any = None):
        """Complete X. Returns X's container type (list of arrays, or one 2-D array; numpy
        or torch) and dtypes, observed slots bit-for-bit; with ``return_masks=True`` also
        ``imputed`` and ``unfilled`` (n, M) boolean masks (disjoint; their union is the
        missing set). ``completion`` / ``temperature_scale`` / ``temperature`` override the
        estimator's settings for this call. ``out`` (arrays like X) receives the result
        instead of new arrays, e.g. reused buffers in a loop; ``out=X`` fills the missing
        slots of X in place (the one case where the caller's data is written)."""
        self._check_fitted()
        completion = self.completion if completion is None else completion
        ts = self.temperature_scale if temperature_scale is None else temperature_scale
        temp = self.temperature if temperature is None else temperature
        self._check_completion(completion, ts, temp)
        if _gpu.use_cuda(self.device, X, mask):
            prep = self._prepare_cuda(X, mask)
            self._check_compatible(prep)
            err = _gpu.nonfinite_error(prep)
            if err is not None:
                raise err
            return _gpu.complete(self, prep, completion, float(ts), float(temp) if temp is not None else 0.0,
                                 out=out, return_masks=return_masks)
        model = self._compiled()
        nt = effective_n_threads(self.n_threads)
        prep = self._prepare(X, mask, nt)
        self._check_compatible(prep)
        cont, views = new_like(prep) if out is None else use_out(prep, out)
        imputed, unfilled = _core.complete(model, prep.Xs, prep.present, views, completion, float(ts),
                                           float(temp) if temp is not None else 0.0, nt, int(self.chunk_size))
        if return_masks:
            return cont, mask_out(prep, imputed), mask_out(prep, unfilled)
        return cont

    def fit_transform(self, X: Any, y: Any = None, *, mask: Any = None, return_masks: bool = False,
                      callback: Optional[Callable[..., Any]] = None):
        """``fit(X, mask=mask)`` then ``transform(X, mask=mask)``."""
        return self.fit(X, y, mask=mask, callback=callback).transform(X, mask=mask, return_masks=return_masks)

    def predict(self, X: Any, *, mask: Any = None):
        """Nearest centre of each row by the partial distance (-1: shares no modality)."""
        self._check_fitted()
        if _gpu.use_cuda(self.device, X, mask):
            prep = self._prepare_cuda(X, mask)
            self._check_compatible(prep)
            err = _gpu.nonfinite_error(prep)
            if err is not None:
                raise err
            return _gpu.assign(self, prep)
        model = self._compiled()
        nt = effective_n_threads(self.n_threads)
        prep = self._prepare(X, mask, nt)
        self._check_compatible(prep)
        labels, _ = _core.assign(model, prep.Xs, prep.present, nt, int(self.chunk_size))
        if prep.torch:
            import torch

            return torch.from_numpy(labels)
        return labels

    def fit_predict(self, X: Any, y: Any = None, *, mask: Any = None):
        return self.fit(X, y, mask=mask).labels_

    # ------------------------------------------------------------------ persistence
    def _state_arrays(self) -> dict:
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k not in ("init", "random_state")}
        if params.get("modality_dims") is not None:
            params["modality_dims"] = [int(d) for d in params["modality_dims"]]
        header = {"magic": _MAGIC, "format_version": FORMAT_VERSION, "ul4m4_version": _core.__version__,
                  "params": params, "inertia": self.inertia_, "n_iter": self.n_iter_,
                  "n_modalities": self.n_modalities_}
        arrays = {"header": np.array(json.dumps(header)), "center_mask": self.center_mask_,
                  "labels": self.labels_}
        for m in range(self.n_modalities_):
            arrays[f"mean_{m}"] = self.mean_[m]
            arrays[f"scale_{m}"] = self.scale_[m]
            arrays[f"centers_{m}"] = self.cluster_centers_[m]
        return arrays

    def save(self, path: "str | os.PathLike") -> None:
        """Write the fitted model to an ``.npz`` file (no pickle: arrays plus a JSON header
        with the format version and parameters)."""
        arrays = self._state_arrays()  # raises NotFittedError before any file is created
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def load(cls, path: "str | os.PathLike") -> "UL4M4Imputer":
        """Read a model written by :meth:`save`; a corrupt or incompatible file raises ValueError."""
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise
        except Exception as exc:  # zipfile / format errors
            raise ValueError(f"{path}: not a readable ul4m4 model file ({exc})") from exc
        return cls._from_state(arrays, str(path))

    @classmethod
    def _from_state(cls, arrays: dict, where: str = "state") -> "UL4M4Imputer":
        try:
            header = json.loads(str(arrays["header"]))
        except Exception as exc:
            raise ValueError(f"{where}: not a ul4m4 model file (no readable header)") from exc
        if not isinstance(header, dict) or header.get("magic") != _MAGIC:
            raise ValueError(f"{where}: not a ul4m4 model file")
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{where}: model format version {header.get('format_version')} is not supported "
                             f"by this ul4m4 (reads version {FORMAT_VERSION})")
        try:
            M = int(header["n_modalities"])
            obj = cls(**header["params"])
            obj.mean_ = [np.asarray(arrays[f"mean_{m}"], dtype=np.float64) for m in range(M)]
            obj.scale_ = [np.asarray(arrays[f"scale_{m}"], dtype=np.float64) for m in range(M)]
            obj.cluster_centers_ = [np.asarray(arrays[f"centers_{m}"], dtype=np.float64) for m in range(M)]
            obj.center_mask_ = np.asarray(arrays["center_mask"], dtype=bool)
            obj.labels_ = np.asarray(arrays["labels"], dtype=np.int32)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: incomplete or incompatible ul4m4 model file ({exc})") from exc
        K = obj.center_mask_.shape[0] if obj.center_mask_.ndim == 2 else -1
        for m in range(M):
            d = obj.mean_[m].shape
            if obj.scale_[m].shape != d or obj.cluster_centers_[m].shape != (K, d[0]) or obj.center_mask_.shape != (K, M):
                raise ValueError(f"{where}: inconsistent array shapes for modality {m}")
        obj.inertia_ = float(header["inertia"])
        obj.n_iter_ = int(header["n_iter"])
        obj.history_ = []
        obj.n_modalities_ = M
        obj.modality_dims_ = tuple(int(mu.shape[0]) for mu in obj.mean_)
        if obj.modality_dims is not None:
            obj.n_features_in_ = int(sum(obj.modality_dims_))
        obj._model = None
        obj._compiled()  # validates the tables
        return obj

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_gpu_models"] = None  # device tables: rebuilt on the next GPU call
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _host_array(a: Any) -> Any:
    """A torch tensor (CPU or CUDA) as a host numpy array; anything else as it is."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") and hasattr(a, "numpy") else a


def _reject_mask_as_y(y: Any) -> None:
    if y is None:
        return
    if hasattr(y, "detach") and hasattr(y, "dim"):  # torch: checked without a copy to the host
        if str(y.dtype) == "torch.bool" and y.dim() == 2:
            raise TypeError("a boolean 2-D array was passed as y; pass the presence mask as mask=...")
        return
    arr = y.numpy() if hasattr(y, "numpy") and not isinstance(y, np.ndarray) else y
    if isinstance(arr, np.ndarray) and arr.dtype == np.bool_ and arr.ndim == 2:
        raise TypeError("a boolean 2-D array was passed as y; pass the presence mask as mask=...")
