"""The scikit-learn side of :class:`ul4m4.UL4M4Imputer`, without importing scikit-learn.

scikit-learn is optional: nothing here imports it unless the caller already has (its
global ``set_config(transform_output=...)`` is read only when ``sklearn`` is in
``sys.modules``) or asks for the tags. What lives here:

* DataFrames in (pandas, polars): converted to a 2-D array, column names recorded in
  ``feature_names_in_`` by ``fit`` and checked by ``transform`` / ``predict`` with
  scikit-learn's messages;
* the one-2-D-array form without ``modality_dims``: one modality per column;
* ``missing_values``: the presence mask made from a value other than NaN;
* the output container: the input's (numpy, torch, pandas, polars), or the one chosen
  by ``set_output``;
* ``get_feature_names_out``, ``__sklearn_tags__`` (scikit-learn >= 1.6) and
  ``_more_tags`` (older versions).
"""
from __future__ import annotations

import functools
import math
import sys
import warnings
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, Optional

import numpy as np

from ._arrays import column_views, is_torch

__all__ = ["SklearnProtocol", "sklearn_io", "not_fitted", "MAX_COLUMN_MODALITIES"]

#: Without ``modality_dims``, a 2-D X has one modality per column: at most this many.
MAX_COLUMN_MODALITIES = 64

_OUTPUTS = ("default", "pandas", "polars")


def not_fitted(base: type, message: str) -> Exception:
    """``base(message)`` (ul4m4's NotFittedError); when scikit-learn is loaded, an instance
    of a subclass that is also ``sklearn.exceptions.NotFittedError``, so that code catching
    either (``check_is_fitted``, ``cross_val_score``, ...) sees it."""
    skl = sys.modules.get("sklearn.exceptions")
    if skl is None or not hasattr(skl, "NotFittedError"):
        return base(message)
    cls = globals().get("_SklearnNotFittedError")
    if cls is None or not issubclass(cls, skl.NotFittedError):
        cls = type("_SklearnNotFittedError", (base, skl.NotFittedError),
                   {"__module__": __name__, "__doc__": base.__doc__})
        globals()["_SklearnNotFittedError"] = cls  # a module attribute: instances pickle
    return cls(message)


def _reject_sparse(X: Any, what: str) -> None:
    t = type(X)
    if t.__module__.startswith("scipy.sparse") or hasattr(X, "tocsr"):
        raise TypeError(f"{what} is a sparse {t.__name__}: sparse input is not supported; pass a dense array "
                        "(X.toarray())")


def _as_float(a: np.ndarray) -> np.ndarray:
    """The one-2-D-array form takes what scikit-learn's estimators take: integer, boolean
    and object arrays become float64 (a copy); float16 and complex are refused."""
    if a.dtype.kind in "iub" or a.dtype == object:
        return np.asarray(a, dtype=np.float64)  # an object that is no number: TypeError from numpy
    if a.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: X has dtype {a.dtype}")
    return a


def _is_nested_rows(X: Any) -> bool:
    """A list of rows of plain numbers, ``[[1.0, nan], [2.0, 3.0]]``: one 2-D array in
    scikit-learn's sense. A list whose items are arrays or tensors is a list of modalities."""
    if not isinstance(X, (list, tuple)) or not X:
        return False
    return all(isinstance(r, (list, tuple)) and r and all(isinstance(v, Real) for v in r) for r in X)


def frame_kind(X: Any) -> Optional[str]:
    """'pandas' or 'polars' for a DataFrame of that library (tested without importing it)."""
    t = type(X)
    lib = t.__module__.split(".")[0]
    if t.__name__ == "DataFrame" and lib in ("pandas", "polars"):
        return lib
    return None


def _feature_names(X: Any, kind: str) -> Optional[np.ndarray]:
    """String column names as an object array; None when the columns are not all strings
    (scikit-learn's rule, with its error for a mix of strings and other types)."""
    cols = list(X.columns)
    if kind == "polars":
        return np.asarray(cols, dtype=object)
    types = sorted({type(c).__qualname__ for c in cols})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, but your input has "
            f"{types} as feature name / column name types. If you want feature names to be stored and "
            "validated, you must convert them all to strings, by using X.columns = X.columns.astype(str) "
            "for example. Otherwise you can remove feature / column names from your input data, or convert "
            "them all to a non-string data type.")
    if types == ["str"]:
        return np.asarray(cols, dtype=object)
    return None


def _frame_to_array(X: Any, kind: str) -> np.ndarray:
    """The DataFrame's values as one 2-D numpy array (a view where the library allows).
    pandas' nullable float columns (pd.NA) become NaN; other dtypes are left for the
    usual dtype check to report."""
    if kind == "pandas":
        a = X.to_numpy()
        if a.dtype == object and len(X.columns) and all(getattr(dt, "kind", "") == "f" for dt in X.dtypes):
            a = X.to_numpy(dtype=np.float64, na_value=np.nan)
        return a
    return X.to_numpy()


@dataclass
class _Input:
    frame: Optional[str]        # 'pandas' / 'polars' when X was a DataFrame
    index: Any                  # the pandas index, to give back
    names: Optional[np.ndarray]  # string column names of a DataFrame
    dense: bool                 # X is one 2-D array (not a list of modalities)


def sklearn_io(fitting: bool, wrap_output: bool = True) -> Callable:
    """Decorator of ``fit`` / ``transform`` / ``predict``: DataFrames in, the
    ``missing_values`` mask, feature-name and width checks, and (``wrap_output``) the
    output container. The decorated method sees numpy, torch or a list of them."""
    def deco(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self, X, *args, **kwargs):
            X, info = self._sk_input(X, fitting)
            if info.frame is not None and kwargs.get("out") is not None:
                raise TypeError("out= takes arrays like X; with a DataFrame X, use the DataFrame transform returns")
            if kwargs.get("mask") is None:
                present = self._present_from_missing_values(X)
                if present is not None:
                    kwargs["mask"] = present
            result = method(self, X, *args, **kwargs)
            if fitting:
                self._sk_fitted(X, info)
                return result
            return self._sk_output(result, info) if wrap_output else result
        return wrapper
    return deco


class SklearnProtocol:
    """Mixin of :class:`~ul4m4.UL4M4Imputer` (no scikit-learn base class: scikit-learn is
    optional). Expects ``modality_dims``, ``missing_values`` and, once fitted,
    ``modality_dims_``."""

    # ------------------------------------------------------------ inputs
    def _dims_for(self, X: Any):
        """``modality_dims``, or one modality per column for a single 2-D X without it."""
        if self.modality_dims is not None or isinstance(X, (list, tuple)):
            return self.modality_dims
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) != 2:
            return None  # the array checks report the shape
        n_cols = int(shape[1])
        if n_cols == 0:
            raise ValueError(f"X has 0 feature(s) (shape={tuple(int(s) for s in shape)}) while a minimum of 1 "
                             "is required.")
        if n_cols > MAX_COLUMN_MODALITIES:
            raise ValueError(
                f"X has {n_cols} columns and no modality_dims: each column would be a modality of its own, and "
                f"at most {MAX_COLUMN_MODALITIES} are supported. Pass modality_dims=[d_0, d_1, ...], the width "
                "of each modality's block of columns (or a list of per-modality arrays)")
        return [1] * n_cols

    def _check_missing_values(self) -> None:
        from ._params import check_param

        check_param("missing_values", self.missing_values)

    def _present_from_missing_values(self, X: Any):
        """The (n, M) presence mask for a ``missing_values`` other than NaN (None for NaN,
        which the array checks handle, or for an X they will reject)."""
        self._check_missing_values()
        v = float(self.missing_values)
        if math.isnan(v):
            return None
        if isinstance(X, (list, tuple)):
            blocks = list(X)
        else:
            dims = self._dims_for(X)
            if dims is None or getattr(X, "ndim", 0) != 2 or sum(int(d) for d in dims) != X.shape[1]:
                return None
            blocks = column_views(X, [int(d) for d in dims])
        if not blocks or any(getattr(b, "ndim", 0) != 2 for b in blocks):
            return None
        if all(is_torch(b) for b in blocks):
            import torch  # only reached with torch tensors

            return torch.stack([~(b == v).all(dim=1) for b in blocks], dim=1)
        try:
            arrs = [np.asarray(b) for b in blocks]
        except Exception:
            return None
        if len({a.shape[0] for a in arrs}) != 1:
            return None
        return np.stack([~(a == v).all(axis=1) for a in arrs], axis=1)

    def _sk_input(self, X: Any, fitting: bool):
        kind = frame_kind(X)
        names = index = None
        if kind is not None:
            names = _feature_names(X, kind)
            index = X.index if kind == "pandas" else None
            X = _frame_to_array(X, kind)
        elif _is_nested_rows(X):
            X = np.asarray(X)  # scikit-learn's array-like: a list of rows
        elif isinstance(X, (list, tuple)):
            for m, x in enumerate(X):
                _reject_sparse(x, f"modality {m}")
        else:
            _reject_sparse(X, "X")
            if not isinstance(X, np.ndarray) and not is_torch(X) and hasattr(X, "__array__"):
                X = np.asarray(X)
        dense = not isinstance(X, (list, tuple))
        if isinstance(X, np.ndarray):
            X = _as_float(X)
        if not fitting:
            self._check_fitted()
            self._check_feature_names(names)
            n_in = getattr(self, "n_features_in_", None)
            shape = getattr(X, "shape", None)
            if dense and n_in is not None and shape is not None and len(shape) == 2 and int(shape[1]) != n_in:
                raise ValueError(f"X has {int(shape[1])} features, but {type(self).__name__} is expecting {n_in} "
                                 "features as input.")
        return X, _Input(frame=kind, index=index, names=names, dense=dense)

    def _sk_fitted(self, X: Any, info: _Input) -> None:
        """After a successful fit: the feature names of this X (none: attribute removed).
        ``n_features_in_`` is the fit's own (``_set_fitted``: none for a list of modalities)."""
        if info.names is not None:
            self.feature_names_in_ = info.names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._compiled()  # the completion tables now: predict / transform leave the estimator as it is

    def _check_feature_names(self, names: Optional[np.ndarray]) -> None:
        fitted = getattr(self, "feature_names_in_", None)
        cls = type(self).__name__
        if fitted is None and names is None:
            return
        if fitted is None:
            warnings.warn(f"X has feature names, but {cls} was fitted without feature names", UserWarning,
                          stacklevel=4)
            return
        if names is None:
            warnings.warn(f"X does not have valid feature names, but {cls} was fitted with feature names",
                          UserWarning, stacklevel=4)
            return
        if len(fitted) == len(names) and np.all(fitted == names):
            return
        msg = "The feature names should match those that were passed during fit.\n"
        unexpected = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))

        def listing(items):
            lines = [f"- {n}\n" for n in items[:5]]
            return "".join(lines) + ("- ...\n" if len(items) > 5 else "")

        if unexpected:
            msg += "Feature names unseen at fit time:\n" + listing(unexpected)
        if missing:
            msg += "Feature names seen at fit time, yet now missing:\n" + listing(missing)
        if not unexpected and not missing:
            msg += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(msg)

    # ------------------------------------------------------------ outputs
    def set_output(self, *, transform: Optional[str] = None):
        """Choose what ``transform`` returns for the one-2-D-array form: ``'pandas'`` or
        ``'polars'`` (a DataFrame with the columns of :meth:`get_feature_names_out` and, for
        a pandas input, its index), or ``'default'``: the input's own container (numpy,
        torch, or the DataFrame library it came in). ``None`` leaves the setting as it is.
        Without a call, scikit-learn's global ``set_config(transform_output=...)`` applies
        when scikit-learn is imported. A list of modalities always gives a list back."""
        if transform is None:
            return self
        if transform not in _OUTPUTS:
            raise ValueError(f"set_output: transform must be one of {_OUTPUTS} or None, got {transform!r}")
        if transform != "default":
            try:
                __import__(transform)
            except ImportError as exc:
                raise ImportError(f"set_output(transform={transform!r}) needs {transform}: pip install "
                                  f"{transform}") from exc
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self

    def _output_container(self) -> str:
        cfg = getattr(self, "_sklearn_output_config", {}).get("transform")
        if cfg is None and "sklearn" in sys.modules:
            cfg = sys.modules["sklearn"].get_config().get("transform_output", "default")
        return cfg or "default"

    def _sk_output(self, result: Any, info: _Input):
        if not info.dense:
            return result
        target = self._output_container()
        if target == "default":
            target = info.frame
        if target is None:
            return result
        if isinstance(result, tuple):
            return (self._to_frame(result[0], target, info),) + result[1:]
        return self._to_frame(result, target, info)

    def _to_frame(self, arr: Any, target: str, info: _Input):
        if is_torch(arr):
            arr = arr.detach().cpu().numpy()
        names = self.get_feature_names_out()
        if target == "pandas":
            import pandas as pd

            return pd.DataFrame(arr, columns=names, index=info.index, copy=False)
        import polars as pl

        return pl.DataFrame(arr, schema=list(names), orient="row")

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: the same as the input's (completion keeps every column).
        ``feature_names_in_`` when fitted on a DataFrame with string column names, else
        ``x0, x1, ...``; ``input_features``, when given, must agree with them."""
        self._check_fitted()
        n = getattr(self, "n_features_in_", None)
        if n is None:
            n = int(sum(self.modality_dims_))
        fitted = getattr(self, "feature_names_in_", None)
        if input_features is not None:
            given = np.asarray(input_features, dtype=object)
            if given.ndim != 1:
                raise ValueError("input_features must be a 1-D sequence of names")
            if fitted is not None and (len(given) != len(fitted) or np.any(given != fitted)):
                raise ValueError("input_features is not equal to feature_names_in_")
            if len(given) != n:
                raise ValueError(f"input_features should have length equal to number of features ({n}), got "
                                 f"{len(given)}")
            return given
        if fitted is not None:
            return np.asarray(fitted, dtype=object)
        return np.asarray([f"x{i}" for i in range(n)], dtype=object)

    # ------------------------------------------------------------ tags
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "cluster_centers_")

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6 tags: a transformer that accepts NaN, needs no y and keeps
        float32 / float64."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
                    input_tags=InputTags(allow_nan=True))

    def _more_tags(self) -> dict:
        """The same tags for scikit-learn < 1.6."""
        return {"allow_nan": True, "requires_y": False, "preserves_dtype": [np.float64, np.float32]}
