"""The documentation cannot rot: the API reference builds from the docstrings with warnings
as errors, every public name has a docstring, and the Markdown files' relative links resolve."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Files linked from docs that another branch adds; the test fails once they exist, so that
#: the entry is removed.
PENDING: set = set()  # links to docs another branch adds (none now)


def _builder():
    spec = importlib.util.spec_from_file_location("build_api_docs", ROOT / "tools" / "build_api_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


API_MODULES = _builder().API_MODULES


def build_api_reference(out_dir: Path) -> subprocess.CompletedProcess:
    """tools/build_api_docs.py's pdoc command (``python -W error -m pdoc ...``)."""
    return subprocess.run(_builder().command(str(out_dir)), capture_output=True, text=True, timeout=300)


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("pdoc", reason="the API reference is built with pdoc (pip install '.[docs]')")
    r = build_api_reference(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not r.stderr.strip(), r.stderr
    page = (tmp_path / "ul4m4.html").read_text()
    for name in ("UL4M4Imputer", "set_output", "get_feature_names_out", "missing_values", "transform"):
        assert name in page, name
    for mod in API_MODULES[1:]:
        assert (tmp_path / (mod.replace(".", "/") + ".html")).exists(), mod


def _public(mod):
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n, v in vars(mod).items() if not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
                 and (inspect.isfunction(v) or inspect.isclass(v))]
    return [(n, getattr(mod, n)) for n in names]


@pytest.mark.parametrize("modname", API_MODULES)
def test_public_names_have_docstrings(modname):
    mod = importlib.import_module(modname)
    assert (mod.__doc__ or "").strip(), f"{modname} has no module docstring"
    missing = []
    for name, obj in _public(mod):
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj) and modname == "ul4m4":  # the estimator: every public method too
            for meth in dir(obj):
                fn = getattr(obj, meth)
                if not meth.startswith("_") and callable(fn) and not (inspect.getdoc(fn) or "").strip():
                    missing.append(f"{name}.{meth}")
    assert not missing, f"{modname}: no docstring for {missing}"


def _markdown_files():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md",
             ROOT / "cuda" / "README.md"]
    return [f for f in files if f.exists()]


@pytest.mark.parametrize("md", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve(md):
    text = md.read_text()
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (md.parent / target.split("#", 1)[0]).resolve()
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        if rel in PENDING:
            continue
        if not path.is_relative_to(ROOT) or not path.exists():
            bad.append(target)
    assert not bad, f"{md.relative_to(ROOT)}: links to missing files {bad}"


def test_pending_links_still_pending():
    done = sorted(p for p in PENDING if (ROOT / p).exists())
    assert not done, f"{done} exist now: remove them from PENDING in tests/test_docs.py"


def test_nothing_points_outside_the_repository():
    needle = "ALGORITHM" + ".md"  # the contract outside the repository, never to be linked
    hits = []
    for sub in ("README.md", "docs", "python", "cpp", "cuda", "bench", "tests", "examples"):
        base = ROOT / sub
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()] if base.exists() else []
        for f in files:
            if f.suffix in (".md", ".py", ".cpp", ".hpp", ".cu", ".cuh", ".txt", ".sh") and needle in f.read_text(
                    errors="replace"):
                hits.append(str(f.relative_to(ROOT)))
    assert not hits, f"references to {needle}: {hits}"
