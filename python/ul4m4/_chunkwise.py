"""What a pass over row chunks does to one chunk, the same for the out-of-core and the Dask
passes: the model and completion settings checked once, rows that observe nothing refused
(``empty_rows='error'``), and a chunk completed with its row numbers counted from the start
of the dataset."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import _core
from ._arrays import explain, inverted_mask_hint
from ._chunks import shift_rows
from ._modelfile import check_table_budget

__all__ = ["check_model", "completion_args", "rows_observed", "complete_chunk"]


def completion_args(imp: Any, completion, temperature_scale, temperature):
    """The completion settings of a transform (the call's overrides, else the estimator's;
    'auto' is the fitted choice), checked with the parameters the pass uses, and greedy's
    K x K tables within the budget."""
    imp._validate_params(("n_threads", "chunk_size", "empty_rows"))
    completion, ts, temp = imp._completion_settings(completion, temperature_scale, temperature)
    check_table_budget(imp.center_mask_.shape[0], len(imp.mean_), completion)
    return completion, ts, temp


def check_model(imp: Any, src: Any) -> None:
    """A fitted ``imp`` whose modalities and widths are those of ``src`` (``M``, ``dims``)."""
    imp._check_fitted()
    M = len(imp.mean_)
    if src.M != M:
        raise ValueError(f"X has {src.M} modalities but the model was fitted on {M}")
    for m, (d, mu) in enumerate(zip(src.dims, imp.mean_)):
        if d != mu.shape[0]:
            raise ValueError(f"modality {m} has width {d} but the model was fitted with {mu.shape[0]}")


def rows_observed(P: np.ndarray, r0: int, refuse_empty: bool, Xs: Optional[Sequence[np.ndarray]] = None,
                  mask_given: bool = True) -> np.ndarray:
    """Which rows of a chunk observe at least one modality. With ``refuse_empty``, a row that
    observes none is a ValueError naming it (counted from the start of the dataset; with
    ``Xs``, the inverted-mask hint where it applies)."""
    rowany = P.any(axis=1)
    if refuse_empty and not rowany.all():
        i = int(np.flatnonzero(~rowany)[0]) + r0
        hint = "" if Xs is None else inverted_mask_hint(Xs, mask_given, i - r0)
        raise ValueError(f"row {i} observes no modality; there is nothing to match it on. Drop such rows, or "
                         "pass empty_rows='mean' to fill them with the training mean" + hint)
    return rowany


def complete_chunk(imp, model, Xs, P, outs, completion, ts, temp, nt, r0, mask_given=True):
    """Complete rows r0.. of a chunk into ``outs`` (the compiled ``complete``); returns the
    (imputed, unfilled) masks."""
    rows_observed(P, r0, imp.empty_rows == "error", Xs, mask_given)
    try:
        return _core.complete(model, Xs, P, outs, completion, float(ts), float(temp) if temp is not None else 0.0,
                              nt, int(imp.chunk_size))
    except ValueError as exc:
        raise explain(ValueError(shift_rows(str(exc), r0)), Xs, mask_given, r0) from None
