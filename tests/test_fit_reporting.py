"""What a fit reports while it runs: ConvergenceWarning, the n_init warning with an
explicit init, verbose lines and the per-iteration callback."""
import math
import warnings

import numpy as np
import pytest

from conftest import blobs
from ul4m4 import ConvergenceWarning, UL4M4Imputer


def slow_init_problem():
    Xs, P, init = blobs(seed=7)
    imp = UL4M4Imputer(4, init=init, tol=0.0, n_threads=1).fit(Xs, mask=P)
    assert imp.n_iter_ >= 3  # the data were chosen for that
    return Xs, P, init, imp.n_iter_


def test_convergence_warning():
    Xs, P, init, n_iter = slow_init_problem()
    with pytest.warns(ConvergenceWarning, match=r"max_iter=2"):
        imp = UL4M4Imputer(4, init=init, tol=0.0, max_iter=2).fit(Xs, mask=P)
    assert imp.n_iter_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        UL4M4Imputer(4, init=init, tol=0.0, max_iter=n_iter).fit(Xs, mask=P)  # converges exactly at max_iter
        UL4M4Imputer(4, init=init, tol=0.0, max_iter=0).fit(Xs, mask=P)
    assert issubclass(ConvergenceWarning, UserWarning)


def test_n_init_with_explicit_init_warns():
    Xs, P, init, _ = slow_init_problem()
    with pytest.warns(RuntimeWarning, match=r"n_init is set to 1"):
        a = UL4M4Imputer(4, init=init, n_init=3).fit(Xs, mask=P)
    b = UL4M4Imputer(4, init=init).fit(Xs, mask=P)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_verbose_prints_one_line_per_iteration(capsys):
    Xs, P, init, n_iter = slow_init_problem()
    imp = UL4M4Imputer(4, init=init, tol=0.0, verbose=1).fit(Xs, mask=P)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == imp.n_iter_ == n_iter
    for k, ln in enumerate(lines, 1):
        assert "iter" in ln and str(k) in ln and "inertia" in ln
    UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P)
    assert capsys.readouterr().out == ""


def test_callback():
    Xs, P, init, n_iter = slow_init_problem()
    seen = []

    def cb(*args):
        seen.append(args)

    imp = UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=cb)
    assert len(seen) == imp.n_iter_ == n_iter == len(imp.history_)
    for k, (it, inertia, n_changed, shift, secs) in enumerate(seen, 1):
        h = imp.history_[k - 1]
        assert it == k == h["iteration"]
        assert isinstance(inertia, float) and inertia >= 0 and inertia == h["inertia"]
        assert isinstance(n_changed, int) and n_changed >= 0 and n_changed == h["n_changed"]
        assert isinstance(shift, float) and shift >= 0 and shift == h["max_shift"]
        assert isinstance(secs, float) and secs >= 0
    assert seen[-1][2] == 0 and all(s[2] > 0 for s in seen[:-1])
    assert math.isclose(seen[-1][1], imp.inertia_, rel_tol=1e-12)

    # returning False stops after that iteration
    stop_at = 2
    calls = []

    def stopper(it, *rest):
        calls.append(it)
        return it < stop_at

    imp2 = UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=stopper)
    assert calls == [1, 2] and imp2.n_iter_ == stop_at
    np.testing.assert_array_equal(imp2.predict(Xs, mask=P), imp2.labels_)
    imp3 = UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=lambda *a: False)
    assert imp3.n_iter_ == 1

    # an exception in the callback propagates
    def boom(*a):
        raise KeyError("from callback")

    with pytest.raises(KeyError, match="from callback"):
        UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=boom)
