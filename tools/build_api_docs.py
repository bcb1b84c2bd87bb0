#!/usr/bin/env python
"""Build the API reference (HTML, from the docstrings) with pdoc; warnings are errors.

    pip install ".[docs]"
    python tools/build_api_docs.py [OUT_DIR]      # default: docs/api (not committed)

tests/test_docs.py runs it on every test run, so the reference cannot rot.
"""
from __future__ import annotations

import pkgutil
import subprocess
import sys

#: The modules of the reference. ul4m4.examples documents its example scripts in its
#: docstring; the scripts need torch and are run by tests/test_examples.py instead.
API_MODULES = ["ul4m4", "ul4m4.outofcore", "ul4m4.dask", "ul4m4.datasets", "ul4m4.masking", "ul4m4.evaluation",
               "ul4m4.cli", "ul4m4.examples"]


def command(out_dir: str) -> list:
    import ul4m4.examples

    scripts = [f"!ul4m4.examples.{m.name}" for m in pkgutil.iter_modules(ul4m4.examples.__path__)]
    return [sys.executable, "-W", "error", "-m", "pdoc", "--docformat", "numpy", "-o", out_dir, *API_MODULES,
            *scripts]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out_dir = argv[0] if argv else "docs/api"
    r = subprocess.run(command(out_dir))
    if r.returncode == 0:
        print(f"API reference written to {out_dir}/index.html")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
