#!/usr/bin/env python3
"""Build ``python/ul4m4/data/mfeat.npz`` from the UCI "Multiple Features" CSVs.

Run once at data-build time (not at package run time)::

    python tools/make_mfeat.py [--src ../shared/data/uci_mfeat] [--out python/ul4m4/data/mfeat.npz]

Each CSV has one header line of column indices, then one row per sample; the
LAST column is the class label (0-9) and the others are the view's features.
The six views share the same rows and labels (checked here).

Every view is stored as float32 (``np.savez_compressed``, no pickled objects).
The script checks the float32 round trip against the float64 parse of the CSV
text and reports, per view, the maximum relative error and whether the float32
value still prints back to the CSV's own decimal text.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
WIDTHS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "uci_mfeat"
DEFAULT_OUT = REPO / "python" / "ul4m4" / "data" / "mfeat.npz"


def read_view(path: Path) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Return (features float64, labels int64, raw feature text) of one CSV."""
    lines = path.read_text().splitlines()
    rows = [ln.split(",") for ln in lines[1:] if ln.strip()]
    text = [r[:-1] for r in rows]
    x = np.array([[float(v) for v in r] for r in text], dtype=np.float64)
    y_f = np.array([float(r[-1]) for r in rows])
    y = y_f.astype(np.int64)
    if not np.array_equal(y, y_f):
        raise ValueError(f"{path}: non-integer labels")
    return x, y, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    arrays: dict[str, np.ndarray] = {}
    labels = None
    worst = 0.0
    for v in VIEWS:
        x64, y, text = read_view(args.src / f"mfeat-{v}.csv")
        if x64.shape != (2000, WIDTHS[v]):
            raise ValueError(f"{v}: shape {x64.shape}, expected {(2000, WIDTHS[v])}")
        if not np.all(np.isfinite(x64)):
            raise ValueError(f"{v}: non-finite values")
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise ValueError(f"{v}: labels differ from the first view's")
        x32 = x64.astype(np.float32)
        back = x32.astype(np.float64)
        denom = np.maximum(np.abs(x64), np.finfo(np.float64).tiny)
        rel = np.where(x64 == 0, np.abs(back), np.abs(back - x64) / denom)
        max_rel = float(rel.max())
        worst = max(worst, max_rel)
        # does the shortest float32 repr print back the CSV's value?
        same_text = all(
            float(np.format_float_positional(np.float32(s), unique=True)) == float(s)
            for row in text for s in row
        )
        n_int = bool(np.all(x64 == np.round(x64)))
        print(f"{v}: shape={x64.shape} range=[{x64.min():.6g}, {x64.max():.6g}] "
              f"integer={n_int} max_rel_err_float32={max_rel:.3g} "
              f"float32_prints_back_csv_text={same_text}")
        arrays[v] = x32

    assert labels is not None
    counts = np.bincount(labels, minlength=10)
    if labels.min() < 0 or labels.max() > 9 or not np.all(counts == 200):
        raise ValueError(f"unexpected class counts {counts}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        labels=labels.astype(np.int8),
        views=np.array(VIEWS, dtype="<U3"),
        **arrays,
    )
    print(f"labels: {counts.tolist()} per class")
    print(f"max relative float32 round-trip error over all views: {worst:.3g}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
