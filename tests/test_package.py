"""The package itself: lazy submodules, and no optional dependency imported by ``import ul4m4``."""
from __future__ import annotations

import subprocess
import sys

import pytest

OPTIONAL = ("dask", "distributed", "torch", "sklearn", "pandas", "polars", "zarr", "scipy", "matplotlib")


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def test_import_loads_no_optional_dependency():
    out = _run(f"import sys, ul4m4; print([m for m in {OPTIONAL!r} if m in sys.modules])")
    assert out == "[]", out


@pytest.mark.parametrize("name", ["outofcore", "datasets", "masking", "evaluation", "cli", "examples"])
def test_submodule_reachable_after_import(name):
    out = _run(f"import sys, ul4m4; m = ul4m4.{name}; print(m.__name__, 'dask' in sys.modules)")
    assert out == f"ul4m4.{name} False", out


def test_dask_submodule_without_dask_import():
    """``ul4m4.dask`` is reachable after ``import ul4m4`` and imports dask only when one of
    its functions runs."""
    out = _run("import sys, ul4m4; f = ul4m4.dask.fit; print('dask' in sys.modules, ul4m4.dask.__name__)")
    assert out == "False ul4m4.dask", out


def test_unknown_attribute_and_dir():
    import ul4m4

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        ul4m4.nope  # noqa: B018
    assert {"outofcore", "dask", "UL4M4Imputer"} <= set(dir(ul4m4))
