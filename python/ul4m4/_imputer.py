"""The estimator: :class:`UL4M4Imputer` (scikit-learn conventions).

Python validates, converts and orchestrates; every pass over the data runs in the
compiled core (``ul4m4._core``) with the GIL released, or on a GPU (``ul4m4._cuda``,
through ``_gpu``) for CUDA tensors / ``device='cuda'``.
"""
from __future__ import annotations

import inspect
import os
import warnings
from numbers import Integral
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from . import _core, _fit, _gpu, _holdout, _modelfile, _params
from ._arrays import Prepared, check_dims, explain, inverted_mask_hint, mask_out, new_like, prepare, use_out
from ._modelfile import FORMAT_VERSION
from ._sklearn import SklearnProtocol, not_fitted, sklearn_io as _sklearn_io

__all__ = ["UL4M4Imputer", "ConvergenceWarning", "NotFittedError", "FORMAT_VERSION"]


class ConvergenceWarning(UserWarning):
    """The Lloyd loop stopped at ``max_iter`` before the labels settled."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


#: Threads a pass runs on (``None``: OpenMP's default on this process's CPUs; an int is
#: clamped to ``_params.max_threads()``). Kept under this name for outofcore / dask.
effective_n_threads = _params.resolve_threads


class UL4M4Imputer(SklearnProtocol):
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
    completion : 'greedy', 'soft' or 'auto'
        'greedy' is the paper's iterative greedy completion (with the anchored-pairs rule);
        'soft' fills a missing modality with a distance-weighted mean of the centres that
        carry it (docs/algorithm.md, section 5b). 'auto' chooses at fit time, among greedy and
        soft at temperature_scale 1, 1/2, 1/4, 1/8, 1/16 and 1/32, the one that best
        reconstructs observed modalities of the training rows hidden on purpose (the
        held-out protocol of :meth:`score`, on at most 4096 rows, drawn with
        ``random_state``, judged with centres refitted for 2 Lloyd iterations without the
        hidden slots); the choice is in ``completion_`` / ``temperature_scale_``, each
        candidate's error in ``completion_scores_``. The fitted centres are those of a fit
        without 'auto'. Not with ``temperature``.
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
        For the scikit-learn form: X is one 2-D array (numpy, torch, or a pandas / polars
        DataFrame) made of M column blocks of these widths. ``None`` with such an X: every
        column is a modality of its own (at most 64 columns), so the estimator behaves like
        scikit-learn's imputers, one value per feature (see "The scikit-learn form" below).
    missing_values : float
        Without ``mask``: a modality of a row is absent where its whole block equals this
        value. ``np.nan`` (default): all-NaN blocks are absent. Another number, e.g. ``0``
        for embeddings stored as all-zero rows when absent: blocks made only of that value
        are absent (a NaN is then an error like any other non-finite observed value).
        Ignored when ``mask`` is given.
    random_state : None, int or numpy Generator
        Seed of k-means++ (an int in [0, 2**64)).

    Every parameter is checked (type and range, a ValueError naming it) by ``set_params`` and
    before any pass over the data by ``fit`` / ``transform`` / ``predict``
    (``ul4m4._params``); ints must fit the compiled core's types (``max_iter``, ``n_init``
    and ``n_clusters`` below 2**31).
    n_threads : int or None
        Threads of the compiled core; None = what OpenMP may use on this process's CPUs.
        Results are bit-identical for any value. A larger value than min(4 x the CPUs, the
        OpenMP thread limit) is clamped to it (``ul4m4._params.max_threads()``).
    chunk_size : int
        Rows per work unit (scratch memory is O(threads x chunk_size x (d + K x M))), any
        int in [1, 2**63 - 1]; a value above the number of rows means one chunk. CPU
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
    completion_, temperature_scale_ : str, float
        The completion transform uses by default: the constructor's values, or with
        ``completion='auto'`` the fitted choice (for a greedy choice, temperature_scale_ is
        the constructor's, used only by a call that asks for completion='soft').
    completion_scores_ : list of dict or None
        ``completion='auto'``: per candidate, ``completion``, ``temperature_scale`` (None
        for greedy) and ``error`` (held-out z-space NRMSE averaged over modalities, lower
        is better; see :meth:`score`), in grid order. None otherwise.
    n_features_in_ : int
        Columns of X when fitted on one 2-D array (the scikit-learn form).
    feature_names_in_ : (n_features_in_,) object array
        Column names when fitted on a DataFrame with string column names.

    The scikit-learn form
    ---------------------
    One 2-D array X (numpy, torch, pandas or polars) stands for the concatenated
    modalities. With ``modality_dims`` its column blocks are the modalities; without it,
    each column is one modality of width 1, so a NaN cell means "this feature is missing
    for this row", as for :class:`sklearn.impute.SimpleImputer` or ``KNNImputer``, and the
    partial distance becomes the mean squared difference over the features two rows share.
    (The alternative, the whole row as one modality, could never fill anything: a row
    either has every value or none.) A row whose cells are all missing observes nothing
    (``empty_rows``). The estimator works in ``Pipeline``, ``GridSearchCV`` and
    ``clone``, passes ``check_estimator`` (but for the checks listed in
    ``tests/test_sklearn.py``), has ``set_output(transform='pandas'|'polars'|'default')``
    and ``get_feature_names_out``; scikit-learn itself is never imported unless you use it.
    A DataFrame in gives a DataFrame out, same columns and index; numpy gives numpy and
    torch gives torch (``set_output`` chooses another container).
    """

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", n_init: int = 1,
                 max_iter: int = 300, tol: float = 1e-4, algorithm: str = "auto", completion: str = "greedy",
                 temperature_scale: float = 1.0, temperature: Optional[float] = None,
                 empty_rows: str = "error", modality_dims: Optional[Sequence[int]] = None,
                 missing_values: float = np.nan,
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
        self.missing_values = missing_values
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
        """The constructor's parameters, by name (scikit-learn's ``get_params``)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> "UL4M4Imputer":
        """Set parameters by name; an unknown name raises ValueError. Values are checked (type
        and range, ValueError naming the parameter) by the next fit / transform / predict,
        before any pass over the data, as scikit-learn's estimators do (so that
        ``set_params`` never fails half-way in a search over parameters)."""
        valid = set(self._param_names())
        for k in params:
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for UL4M4Imputer; valid: {sorted(valid)}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {k: v.default for k, v in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{k}={getattr(self, k)!r}" for k in self._param_names()
                   if not (isinstance(getattr(self, k), str) and getattr(self, k) == defaults[k])
                   and getattr(self, k) is not defaults[k] and not _equal(getattr(self, k), defaults[k])]
        return f"UL4M4Imputer({', '.join(changed)})"

    # ------------------------------------------------------------------ validation
    def _validate_params(self, names: Optional[Sequence[str]] = None) -> None:
        """Every parameter (or those of ``names``) through ``_params``: type and range."""
        _params.check_params(self.get_params(), names)

        if (names is None or "completion" in names) and self.completion == "auto" and self.temperature is not None:
            raise ValueError("completion='auto' chooses a temperature_scale; it cannot be combined with an "
                             f"absolute temperature (got temperature={self.temperature!r})")

    @staticmethod
    def _check_completion(completion, temperature_scale, temperature, allow_auto=False):
        """A call's completion settings; 'auto' only where the fitted choice can stand for it."""
        _params.check_param("completion", completion)
        if completion == "auto" and not allow_auto:
            raise ValueError("completion must be 'greedy' or 'soft' here (a concrete completion), got 'auto'")
        _params.check_param("temperature_scale", temperature_scale)
        _params.check_param("temperature", temperature)

    def _prepare(self, X: Any, mask: Any, nt: int, fitted: bool = False) -> Prepared:
        prep = prepare(X, mask, self._dims_for(X), _core, nt, self.chunk_size,
                       expect=self._fitted_dims() if fitted else None)
        empty = np.flatnonzero(~prep.present.any(axis=1))
        self._check_empty(empty.size, int(empty[0]) if empty.size else -1, prep)
        return prep

    def _check_empty(self, n_empty: int, first: int, prep: Any = None) -> None:
        if n_empty and self.empty_rows == "error":
            hint = inverted_mask_hint(prep.Xs, prep.mask_given, first) if prep is not None else ""
            raise ValueError(
                f"{n_empty} row(s) observe no modality (first: row {first}); there is nothing to "
                "match them on. Drop them, or pass empty_rows='mean' to fill them with the training mean" + hint
            )

    def _prepare_cuda(self, X: Any, mask: Any, fitted: bool = False) -> "_gpu.CudaPrepared":
        prep = _gpu.prepare(X, mask, self._dims_for(X), self.device, expect=self._fitted_dims() if fitted else None)
        self._check_empty(prep.scan["n_empty"], prep.scan["first_empty"], prep)
        return prep

    def _fitted_dims(self) -> List[int]:
        return [int(mu.shape[0]) for mu in self.mean_]

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise not_fitted(NotFittedError, "this UL4M4Imputer is not fitted yet: call fit first")

    def _check_compatible(self, prep: Prepared) -> None:
        check_dims(prep.dims, self._fitted_dims())

    # ------------------------------------------------------------------ fit
    @_sklearn_io(fitting=True)
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
        if cuda and self.completion == "auto":
            raise NotImplementedError("completion='auto' is chosen on the CPU only for now: fit with device='cpu' "
                                      "(the model then transforms on the GPU too), or pass completion='greedy'/'soft'")
        if cuda:
            prep = self._prepare_cuda(X, mask)
            mu, sigma = _gpu.compute_stats(prep)
            eligible = prep.n - int(prep.scan["n_empty"])
        else:
            nt = effective_n_threads(self.n_threads)
            prep = self._prepare(X, mask, nt)
            chunk = _params.chunk_for(self.chunk_size, prep.n)
            try:
                mu, sigma = _core.compute_stats(prep.Xs, prep.present, nt, chunk)
            except ValueError as exc:
                raise explain(exc, prep.Xs, prep.mask_given) from None
            eligible = int(prep.present.any(axis=1).sum())
        K = int(self.n_clusters)
        _fit.check_n_clusters(K, eligible)
        init_C = init_H = None
        n_init = int(self.n_init)
        if not isinstance(self.init, str):
            init_C, init_H = self._init_centres(self.init, mu, sigma, K)
            n_init = _fit.explicit_init_runs(n_init)
        seed = _params.seed_from(self.random_state)
        on_iter = _fit.iteration_reporter(self.verbose, callback)
        use_cb = bool(self.verbose) or callback is not None
        if cuda:
            res = _gpu.kmeans(prep, mu, sigma, K, int(self.max_iter), float(self.tol), n_init, seed, init_C, init_H,
                              on_iter if use_cb else None)
        else:
            res = _core.kmeans(prep.Xs, prep.present, mu, sigma, K, int(self.max_iter), float(self.tol), n_init,
                               seed, init_C, init_H, on_iter if use_cb else None, nt, chunk,
                               self._algorithm_for(K, sum(prep.dims)))
        self._set_fitted(mu, sigma, res, res["labels"], prep.dims,
                         n_features_in=int(sum(prep.dims)) if prep.kind == "dense" else None)
        if self.completion == "auto":
            self._choose_completion(prep, cuda)
        return self

    def _set_fitted(self, mu, sigma, res: dict, labels: Any, dims: Sequence[int],
                    n_features_in: Optional[int] = None, stacklevel: int = 3) -> None:
        """The fitted state, written in one place for every fit (in memory, out of core,
        Dask): statistics, centres, labels, the run's figures, and no cached model of an
        earlier fit (CPU or device) or attribute of an earlier input layout.

        ``res``: a fit result (centres, H, inertia, n_iter, history as (iteration, inertia,
        n_changed, max_shift, seconds) tuples, converged)."""
        self.mean_ = [np.asarray(a, dtype=np.float64) for a in mu]
        self.scale_ = [np.asarray(a, dtype=np.float64) for a in sigma]
        self.cluster_centers_ = [np.ascontiguousarray(c, dtype=np.float64) for c in res["centres"]]
        self.center_mask_ = np.asarray(res["H"], dtype=bool).copy()
        self.labels_ = np.asarray(labels, dtype=np.int32)
        self.inertia_ = float(res["inertia"])
        self.n_iter_ = int(res["n_iter"])
        self.history_ = [dict(iteration=int(h[0]), inertia=float(h[1]), n_changed=int(h[2]), max_shift=float(h[3]),
                              seconds=float(h[4]), skipped=float(h[5]) if len(h) > 5 else 0.0)
                         for h in res["history"]]
        self.n_modalities_ = len(dims)
        self.modality_dims_ = tuple(int(d) for d in dims)
        if n_features_in is not None:
            self.n_features_in_ = int(n_features_in)
        elif "n_features_in_" in self.__dict__:
            del self.n_features_in_
        for stale in ("fit_rows_", "_labels_src"):  # a max_rows fit's sample; the labels of a loaded file
            self.__dict__.pop(stale, None)
        self._model = None
        self._gpu_models = None
        for stale in ("completion_", "temperature_scale_"):  # a choice of an earlier fit
            self.__dict__.pop(stale, None)
        self.completion_scores_ = None
        if self.completion != "auto":
            self._choose_completion(None, False)  # the fixed choice; fit() makes the 'auto' one
        if not res["converged"] and self.n_iter_ == self.max_iter and self.max_iter > 0:
            warnings.warn(f"k-means stopped at max_iter={self.max_iter} before convergence; "
                          "increase max_iter or tol", ConvergenceWarning, stacklevel=stacklevel)

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

    # ------------------------------------------------------------------ self-tuning
    def _holdout_seed(self) -> int:
        """Seed of the held-out draws: random_state when an int, else 0 (so that every
        candidate of a search is scored on the same slots)."""
        rs = self.random_state
        return int(rs) if isinstance(rs, Integral) and not isinstance(rs, bool) and rs >= 0 else 0

    def _choose_completion(self, prep: Prepared, cuda: bool) -> None:
        """Sets completion_, temperature_scale_ and completion_scores_ (end of fit)."""
        self.completion_scores_ = None
        if self.completion != "auto":
            self.completion_, self.temperature_scale_ = self.completion, float(self.temperature_scale)
            return
        hide = _holdout.holdout_mask(prep.present, self._holdout_seed(), _holdout.AUTO_MAX_ROWS)
        grid = _holdout.GRID
        cands = [(c, float(self.temperature_scale) if ts is None else ts, None) for c, ts in grid]
        nt = effective_n_threads(self.n_threads)
        chunk = _params.chunk_for(self.chunk_size, prep.n)
        # The fitted centres have seen the hidden values, and the rows observing several
        # modalities are exactly those that tie the modalities together in the centres: judged
        # with them, the candidates that copy centres most closely look better than they are.
        # So the candidates are judged with centres refitted without the hidden slots: a few
        # Lloyd iterations on the training data with those slots absent, from the fitted centres
        # (on large data, on the held-out rows and a sample of the others: AUTO_REFIT_ROWS).
        seen = (prep.present.astype(bool) & ~hide).view(np.uint8)
        Xs = prep.Xs
        rows = _holdout.refit_rows(hide, self._holdout_seed(), _holdout.AUTO_REFIT_ROWS)
        if rows is not None:
            Xs, seen = [X[rows] for X in Xs], seen[rows]
        H = np.ascontiguousarray(self.center_mask_, dtype=np.uint8)
        res = _core.kmeans(Xs, np.ascontiguousarray(seen), self.mean_, self.scale_, int(self.n_clusters),
                           _holdout.AUTO_REFIT_ITER, float(self.tol), 1, 0,
                           [np.nan_to_num(c) for c in self.cluster_centers_], H, None, nt,
                           _params.chunk_for(self.chunk_size, seen.shape[0]))
        model = _core.Model(self.mean_, self.scale_, list(res["centres"]),
                            np.ascontiguousarray(np.asarray(res["H"], dtype=bool), dtype=np.uint8))
        errors = _holdout.holdout_errors(model, _core, prep.Xs, prep.present, hide, self.mean_,
                                         self.scale_, cands, nt, chunk)
        self.completion_scores_ = [dict(completion=c, temperature_scale=ts, error=e)
                                   for (c, ts), e in zip(grid, errors)]
        finite = [i for i, e in enumerate(errors) if np.isfinite(e)]
        best = min(finite, key=lambda i: errors[i]) if finite else 0  # ties: the earlier candidate
        self.completion_, self.temperature_scale_ = cands[best][0], cands[best][1]
        if self.verbose:
            n_rows = int(hide.any(axis=1).sum())
            for (c, ts), e in zip(grid, errors):
                print(f"[ul4m4] completion {_holdout.candidate_label(c, ts):<10s} held-out NRMSE {e:.4f}"
                      f"{'  <- chosen' if (c, ts) == grid[best] else ''}", flush=True)
            print(f"[ul4m4] completion='auto': {_holdout.candidate_label(*grid[best])} "
                  f"(on {int(hide.sum())} hidden slots of {n_rows} training rows)", flush=True)

    def _reject_auto(self, where: str) -> None:
        """Fits that do not run :meth:`fit` (out of core, Dask) cannot choose 'auto'."""
        if self.completion == "auto":
            raise ValueError(f"completion='auto' is chosen by UL4M4Imputer.fit (in memory); {where} needs a "
                             "fixed completion: pass completion='greedy' or 'soft'")

    def _completion_settings(self, completion: Optional[str], temperature_scale: Optional[float],
                             temperature: Optional[float]):
        """The concrete (completion, temperature_scale, temperature) of a call: arguments
        override the estimator's settings; 'auto' is the choice made at fit time."""
        completion = self.completion if completion is None else completion
        self._check_completion(completion, 1.0, None, allow_auto=True)
        tuned = self.completion == "auto" or completion == "auto"
        if tuned and not hasattr(self, "completion_"):
            self._check_fitted()
            raise ValueError("completion='auto' is chosen by UL4M4Imputer.fit, and this model has no choice "
                             "(fitted another way, e.g. out of core): pass completion='greedy' or 'soft'")
        if completion == "auto":
            completion = self.completion_
        default_ts = self.temperature_scale_ if tuned else self.temperature_scale
        ts = default_ts if temperature_scale is None else temperature_scale
        temp = self.temperature if temperature is None else temperature
        self._check_completion(completion, ts, temp)
        return completion, ts, temp

    @_sklearn_io(fitting=False, wrap_output=False)
    def score(self, X: Any, y: Any = None, *, mask: Any = None) -> float:
        """Unsupervised score of the fitted model on X: minus the held-out reconstruction
        error, so higher is better (usable by ``GridSearchCV`` without ``y``).

        Some observed modalities of X's rows are hidden following X's own missingness
        pattern: each row observing >= 2 modalities draws a donor row among the rows missing
        something and hides what the donor misses (a draw must hide >= 1 modality and keep
        >= 1; up to 4 draws, else the row is left out); on complete data, one modality per
        row, chosen uniformly. The rows are completed with the model's completion (the
        fitted choice for ``completion='auto'``) and compared in the model's z-space,
        ``z = (x - mean_) / scale_``: per modality m,
        ``NRMSE_m = sqrt(sum ||z_hat - z||^2 / sum ||z||^2)`` over its hidden slots (mean-fill
        scores 1), and the score is ``-mean_m NRMSE_m`` over the modalities with hidden
        slots. The draws use ``random_state`` (0 unless it is an int): the same data and
        seed hide the same slots, whatever the other parameters. All rows able to take part
        are used. NaN when nothing can be hidden (no row observes two modalities). Runs on
        the CPU (CUDA tensors are copied to the host). ``y`` is ignored."""
        _reject_mask_as_y(y)
        self._check_fitted()
        completion, ts, temp = self._completion_settings(None, None, None)
        nt = effective_n_threads(self.n_threads)
        prep = self._prepare(_host_array(X) if not isinstance(X, (list, tuple)) else [_host_array(x) for x in X],
                             None if mask is None else _host_array(mask), nt)
        self._check_compatible(prep)
        hide = _holdout.holdout_mask(prep.present, self._holdout_seed())
        err = _holdout.holdout_errors(self._compiled(), _core, prep.Xs, prep.present, hide, self.mean_, self.scale_,
                                      [(completion, ts, temp)], nt, _params.chunk_for(self.chunk_size, prep.n))[0]
        return -err

    # ------------------------------------------------------------------ inference
    def _compiled(self):
        self._check_fitted()
        if getattr(self, "_model", None) is None:
            self._model = _core.Model(self.mean_, self.scale_, self.cluster_centers_,
                                      np.ascontiguousarray(self.center_mask_, dtype=np.uint8))
        return self._model

    @_sklearn_io(fitting=False)
    def transform(self, X: Any, *, mask: Any = None, return_masks: bool = False,
                  completion: Optional[str] = None, temperature_scale: Optional[float] = None,
                  temperature: Optional[float] = None, out: Any = None, return_confidence: bool = False):
        """Complete X. Returns X's container type (list of arrays, or one 2-D array; numpy
        or torch) and dtypes, observed slots bit-for-bit; with ``return_masks=True`` also
        ``imputed`` and ``unfilled`` (n, M) boolean masks (disjoint; their union is the
        missing set). ``completion`` / ``temperature_scale`` / ``temperature`` override the
        estimator's settings for this call ('auto': the choice made at fit time). ``out``
        (arrays like X) receives the result instead of new arrays, e.g. reused buffers in a
        loop; ``out=X`` fills the missing slots of X in place (the one case where the
        caller's data is written).

        ``return_confidence=True`` appends an (n, M) float32 array (torch tensor for torch
        inputs), last in the returned tuple: per row and modality, a number in [0, 1] saying
        how unambiguous the fill is. 1.0 for an observed slot (kept as it is), 0.0 for an
        unfilled one (training mean). For an imputed slot: greedy,
        ``1 - s_1 / s_2`` where s_1 is the winning centre's completion score and s_2 the
        runner-up's among the centres carrying the modality (0 at a tie, 1 when a single
        centre carries it); soft, ``1 - H(w) / log(J)``, H the entropy of the J carrying
        centres' weights (0 for uniform weights, 1 when one centre takes all). Lower
        confidence goes with larger errors (tested on mfeat); use it to weight or mask
        imputed inputs. Asking for it leaves the completion bit-identical. CPU only: on the
        GPU path it raises NotImplementedError."""
        self._check_fitted()
        self._validate_params(("n_threads", "chunk_size", "empty_rows", "modality_dims", "device"))
        completion, ts, temp = self._completion_settings(completion, temperature_scale, temperature)
        _modelfile.check_table_budget(self.center_mask_.shape[0], len(self.mean_), completion)
        if _gpu.use_cuda(self.device, X, mask):
            if return_confidence:
                raise NotImplementedError("return_confidence is computed by the CPU core only: pass device='cpu' "
                                          "(CUDA tensors: move them with .cpu())")
            prep = self._prepare_cuda(X, mask, fitted=True)
            err = _gpu.nonfinite_error(prep)
            if err is not None:
                raise err
            return _gpu.complete(self, prep, completion, float(ts), float(temp) if temp is not None else 0.0,
                                 out=out, return_masks=return_masks)
        model = self._compiled()
        nt = effective_n_threads(self.n_threads)
        prep = self._prepare(X, mask, nt, fitted=True)
        cont, views = new_like(prep, _core) if out is None else use_out(prep, out)
        try:
            res = _core.complete(model, prep.Xs, prep.present, views, completion, float(ts),
                                 float(temp) if temp is not None else 0.0, nt,
                                 _params.chunk_for(self.chunk_size, prep.n), return_confidence=bool(return_confidence))
        except ValueError as exc:
            raise explain(exc, prep.Xs, prep.mask_given) from None
        ret = (cont,)
        if return_masks:
            ret += (mask_out(prep, res[0]), mask_out(prep, res[1]))
        if return_confidence:
            ret += (mask_out(prep, res[2]),)
        return ret if len(ret) > 1 else cont

    def fit_transform(self, X: Any, y: Any = None, *, mask: Any = None, return_masks: bool = False,
                      callback: Optional[Callable[..., Any]] = None):
        """``fit(X, mask=mask)`` then ``transform(X, mask=mask)``."""
        return self.fit(X, y, mask=mask, callback=callback).transform(X, mask=mask, return_masks=return_masks)

    @_sklearn_io(fitting=False, wrap_output=False)
    def predict(self, X: Any, *, mask: Any = None):
        """Nearest centre of each row by the partial distance (-1: shares no modality)."""
        self._check_fitted()
        self._validate_params(("n_threads", "chunk_size", "empty_rows", "modality_dims", "device"))
        if _gpu.use_cuda(self.device, X, mask):
            prep = self._prepare_cuda(X, mask, fitted=True)
            err = _gpu.nonfinite_error(prep)
            if err is not None:
                raise err
            return _gpu.assign(self, prep)
        model = self._compiled()
        nt = effective_n_threads(self.n_threads)
        prep = self._prepare(X, mask, nt, fitted=True)
        try:
            labels, _ = _core.assign(model, prep.Xs, prep.present, nt, _params.chunk_for(self.chunk_size, prep.n))
        except ValueError as exc:
            raise explain(exc, prep.Xs, prep.mask_given) from None
        if prep.torch:
            import torch

            return torch.from_numpy(labels)
        return labels

    def fit_predict(self, X: Any, y: Any = None, *, mask: Any = None):
        """``fit(X, mask=mask)``, then the training rows' clusters (``labels_``)."""
        return self.fit(X, y, mask=mask).labels_

    # ------------------------------------------------------------------ persistence
    def save(self, path: "str | os.PathLike") -> None:
        """Write the fitted model to an ``.npz`` file (no pickle: arrays plus a JSON header
        with the format version and parameters); see docs/model-file.md."""
        _modelfile.write(self, path)

    @classmethod
    def load(cls, path: "str | os.PathLike") -> "UL4M4Imputer":
        """Read a model written by :meth:`save`. Everything is validated first; any defect
        of the file raises ValueError naming the member or header field (docs/model-file.md).
        ``labels_`` (one int per training row) is read on first access."""
        return _modelfile.read(path)

    def __getattr__(self, name: str) -> Any:
        # Only reached for a missing attribute: labels_ of a loaded model, read on demand.
        if name == "labels_":
            src = self.__dict__.get("_labels_src")
            if src is not None:
                labels = src.read()
                self.__dict__["labels_"] = labels
                self.__dict__.pop("_labels_src", None)
                return labels
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self):
        if self.__dict__.get("_labels_src") is not None:
            self.labels_  # a pickle holds the labels, not the path they came from
        state = self.__dict__.copy()
        state["_model"] = None
        state["_gpu_models"] = None  # device tables: rebuilt on the next GPU call
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if isinstance(self.__dict__.get("missing_values"), float) and np.isnan(self.missing_values):
            self.missing_values = np.nan  # the default object again: get_params() compares equal


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
