"""The examples installed with the package (``python -m ul4m4.examples.NAME``) run in quick
mode and do what they claim; the README's Python code blocks run as pasted."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args):
    return subprocess.run([sys.executable, "-m", f"ul4m4.examples.{name}", *args], capture_output=True,
                          text=True, timeout=300)


def test_torch_fusion_quick():
    pytest.importorskip("torch", reason="ul4m4.examples.torch_fusion needs PyTorch (pip install torch)")
    r = run_example("torch_fusion", "--quick")
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"test F1-micro: ([0-9.]+)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) > 0.8  # 10 classes; the complete-data ceiling is about 0.98
    assert "unfilled" in r.stdout


def test_torch_fusion_pieces():
    """The collate function and the head, in-process on a few rows."""
    torch = pytest.importorskip("torch", reason="needs PyTorch")
    import numpy as np

    import ul4m4
    from ul4m4.examples import torch_fusion as mod
    rng = np.random.default_rng(0)
    X = [torch.from_numpy(rng.normal(size=(60, d)).astype(np.float32)) for d in (5, 3)]
    mask = torch.ones(60, 2, dtype=torch.bool)
    mask[::2, 1] = False
    X[1][~mask[:, 1]] = float("nan")
    imp = ul4m4.UL4M4Imputer(4, completion="soft", random_state=0).fit(X, mask=mask)
    ds = mod.MaskedViews(X, mask, torch.zeros(60, dtype=torch.long))
    views, bmask, y, idx = mod.CompletingCollate(imp)([ds[i] for i in range(10)])
    full = imp.transform(X, mask=mask)
    assert all(torch.equal(v, f[:10]) for v, f in zip(views, full))
    assert not torch.isnan(views[1]).any() and torch.equal(bmask, mask[:10])
    head = mod.FusionHead([5, 3], 4, [v.mean(0) for v in full], [v.std(0) for v in full], width=8, heads=2)
    assert head(views).shape == (10, 4)
    yt = torch.tensor([0, 1, 2, 2])
    assert mod.f1_micro(yt, torch.tensor([0, 1, 2, 0]), 3) == 0.75


def test_large_data_quick():
    """ul4m4.examples.large_data: memory-mapped fit and completion to .npy, and the Dask fit
    (skipped inside the script when dask is absent) with labels equal to fit_streaming."""
    r = run_example("large_data", "--quick")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"completed 20,000 rows in .*: [0-9,]+ slots imputed, 0 unfilled", r.stdout), r.stdout
    try:
        import distributed  # noqa: F401
    except ImportError:
        assert "skipping the Dask part" in r.stdout
    else:
        assert "labels equal to fit_streaming: True" in r.stdout, r.stdout
