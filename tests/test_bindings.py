"""The compiled modules' own surface: named arguments and the method's constants."""
import numpy as np

import reference as ref
from ul4m4 import _core


def test_core_constants_agree_with_the_reference():
    # One definition in ul4m4/common.hpp, exported for the Python passes (outofcore moments);
    # the independent numpy oracle states the contract's value on its own.
    assert _core.SIGMA_FLOOR == ref.SIGMA_FLOOR


def test_core_functions_take_named_arguments():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    X[::4] = np.nan
    P = _core.presence_from_nan(Xs=[X], n=40, n_threads=1, chunk=16)
    assert P[:, 0].tolist() == [i % 4 != 0 for i in range(40)]
    mu, sigma = _core.compute_stats(Xs=[X], present=P, n_threads=1, chunk=16)
    np.testing.assert_allclose(mu[0], np.nanmean(X, axis=0))
    for fn in ("kmeans", "assign", "assign_and_sum", "update_centres", "complete", "seed_kmeanspp"):
        assert "n_threads" in getattr(_core, fn).__doc__ or fn == "update_centres", fn
    assert "temperature_scale" in _core.complete.__doc__
