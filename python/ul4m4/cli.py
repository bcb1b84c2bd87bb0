"""The ``ul4m4`` command line.

Subcommands (each has ``--help``)::

    ul4m4 demo     compare ul4m4 with mean-fill, zero-fill and KNNImputer on the shipped
                   UCI Multiple Features data; prints a table, writes JSON + a PNG plot
    ul4m4 fit      fit a model on a dataset given as one .npy per modality (or one .npz)
    ul4m4 impute   complete a dataset with a fitted model; writes one .npy per modality
                   plus imputed_mask.npy and unfilled_mask.npy

Input data: ``--modality a.npy --modality b.npy`` (one 2-D float32/float64 array per
modality, same number of rows, read memory-mapped), or ``--data data.npz`` with one key
per modality (order: ``--keys a,b`` or the sorted key names).  The optional presence
mask is an (n_samples, n_modalities) boolean .npy (True = observed; integers 0/1 are read
as the Python API reads them), ``--mask mask.npy``, or a key of the .npz, ``--mask-key
mask``.  Without a mask, a missing modality of a row must be all NaN.

``ul4m4 impute`` builds its result in ``.<out-dir>.partial-<pid>`` beside ``--out-dir`` and
swaps it in at the end, so that ``--out-dir`` always holds one complete result with its
manifest; SIGINT and SIGTERM remove the partial directory (exit status 130 / 143), and what a
killed run leaves behind is removed by the next run.

Errors in the inputs (a missing file, a wrong shape or dtype, a mask that does not
match, a model that does not match the data) print ``ul4m4: error: ...`` and exit with
status 2, without a traceback (set ``UL4M4_TRACEBACK=1`` to see one).

Also runnable as ``python -m ul4m4``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["main", "build_parser", "CLIError"]

PROG = "ul4m4"
RESERVED = ("imputed_mask", "unfilled_mask", "manifest")


class CLIError(Exception):
    """A user-facing error: printed as ``ul4m4: error: ...``, exit status 2."""


# ---------------------------------------------------------------------------- progress
def _progress_enabled(args) -> bool:
    if getattr(args, "progress", None) is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)()) and not getattr(args, "quiet", False)
    return bool(args.progress)


def _info(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- input loading
def _check_matrix(a: np.ndarray, where: str) -> np.ndarray:
    if a.ndim != 2:
        raise CLIError(f"{where}: expected a 2-D array (n_samples, width), got shape {a.shape}")
    if not (a.dtype.kind == "f" and a.dtype.itemsize in (4, 8)):  # any byte order: read through a native copy
        raise CLIError(f"{where}: has dtype {a.dtype}; ul4m4 needs float32 or float64 "
                       "(convert with .astype(np.float32))")
    if a.shape[1] == 0:
        raise CLIError(f"{where}: has width 0")
    return a


def _load_npy(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file ({what})")
    if p.is_dir():
        raise CLIError(f"{path}: is a directory, expected a .npy file ({what})")
    if p.suffix.lower() == ".npz":
        raise CLIError(f"{path}: is an .npz archive; pass it with --data (and --keys / --mask-key)")
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # bad magic, pickled object arrays, truncated file ...
        raise CLIError(f"{path}: not a readable .npy array file ({exc})") from None


def _modality_name(path: str) -> str:
    name = Path(path).name
    for suf in (".npy", ".NPY"):
        if name.endswith(suf):
            name = name[: -len(suf)]
    return name


def _check_names(names: Sequence[str]) -> None:
    seen = set()
    for n in names:
        if not n or n in (".", "..") or "/" in n or "\\" in n or n.startswith("."):
            raise CLIError(f"modality name {n!r} cannot be used as an output file name")
        if n in RESERVED:
            raise CLIError(f"modality name {n!r} is reserved for an output file; rename the input")
        if n in seen:
            raise CLIError(f"two modalities are named {n!r} (output files would collide); rename one input")
        seen.add(n)


def _load_mask(a: np.ndarray, where: str, n: int, M: int) -> np.ndarray:
    from ._arrays import as_mask  # the Python API's rules: booleans, or integers 0/1

    try:
        return as_mask(np.asarray(a), n, M, what="mask")
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{where}: {exc}") from None


def load_inputs(args) -> Tuple[List[str], List[np.ndarray], Optional[np.ndarray], List[str]]:
    """(names, arrays, mask or None, source descriptions) from --modality/--data/--mask."""
    if args.modality and args.data:
        raise CLIError("give the data either as --modality files or as one --data .npz, not both")
    if not args.modality and not args.data:
        raise CLIError("no input data: give --modality FILE.npy (once per modality) or --data FILE.npz")
    mask_arr = None
    mask_where = None
    if args.modality:
        if args.keys or args.mask_key:
            raise CLIError("--keys and --mask-key only apply to --data")
        names = [_modality_name(p) for p in args.modality]
        arrays = [_check_matrix(_load_npy(p, "modality"), p) for p in args.modality]
        sources = list(args.modality)
    else:
        p = Path(args.data)
        if not p.exists():
            raise CLIError(f"{args.data}: no such file (--data)")
        try:
            with np.load(p, allow_pickle=False) as z:
                if not hasattr(z, "files"):
                    raise CLIError(f"{args.data}: is a single .npy array, not an .npz archive; use --modality")
                files = list(z.files)
                if args.keys:
                    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
                else:
                    keys = sorted(k for k in files if k != args.mask_key)
                missing = [k for k in keys + ([args.mask_key] if args.mask_key else []) if k not in files]
                if missing:
                    raise CLIError(f"{args.data}: no key {missing[0]!r}; the archive holds {files}")
                if not keys:
                    raise CLIError(f"{args.data}: holds no modality array")
                if args.mask_key and args.mask_key in keys:
                    raise CLIError(f"key {args.mask_key!r} is given both as a modality and as the mask")
                arrays = []
                for k in keys:
                    a = np.asarray(z[k])
                    if a.dtype == np.bool_:
                        raise CLIError(f"{args.data}[{k}]: is a boolean array, not a modality; if it is the "
                                       f"presence mask, pass --mask-key {k}")
                    arrays.append(_check_matrix(a, f"{args.data}[{k}]"))
                if args.mask_key:
                    mask_arr = np.asarray(z[args.mask_key])
                    mask_where = f"{args.data}[{args.mask_key}]"
        except CLIError:
            raise
        except Exception as exc:
            raise CLIError(f"{args.data}: not a readable .npz archive ({exc})") from None
        names = keys
        sources = [f"{args.data}[{k}]" for k in keys]
    _check_names(names)
    n = arrays[0].shape[0]
    for src, a in zip(sources, arrays):
        if a.shape[0] != n:
            raise CLIError(f"{src}: has {a.shape[0]} rows but {sources[0]} has {n}; every modality needs "
                           "one row per sample")
    if n == 0:
        raise CLIError(f"{sources[0]}: has no rows")
    if getattr(args, "mask", None):
        if mask_arr is not None:
            raise CLIError("give the mask either as --mask or as --mask-key, not both")
        mask_arr = _load_npy(args.mask, "mask")
        mask_where = args.mask
    mask = None if mask_arr is None else _load_mask(mask_arr, mask_where, n, len(arrays))
    return names, arrays, mask, sources


# ---------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from . import __version__
    from .evaluation import IMPUTERS, METRICS, format_table, plot_results, run_protocol

    rates = args.rates if args.rates is not None else ([0.5] if args.quick else [0.3, 0.5, 0.66])
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    k = args.clusters
    imputers = list(IMPUTERS)
    if args.imputers:
        imputers = [s.strip() for s in args.imputers.split(",") if s.strip()]
        unknown = [s for s in imputers if s not in IMPUTERS]
        if unknown:
            raise CLIError(f"unknown imputer(s) {unknown}; choose among {','.join(IMPUTERS)}")
    if args.no_knn:
        imputers = [s for s in imputers if s != "knn"]
    knn_seeds = None if args.knn_seeds == "all" else min(int(args.knn_seeds), seeds)
    if knn_seeds == 0:
        imputers = [s for s in imputers if s != "knn"]
    if "knn" not in imputers:
        knn_seeds = None
    if seeds < 1:
        raise CLIError("--seeds must be >= 1")
    if k < 1:
        raise CLIError("--clusters must be >= 1")
    for r in rates:
        if not 0 < r <= 5 / 6 + 1e-9:
            raise CLIError(f"--rates: {r} is not in (0, 5/6] (the data have 6 views; each row keeps one)")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{out}: cannot create the output directory ({exc.strerror})") from None

    print(f"ul4m4 {__version__} demo: UCI Multiple Features (2000 rows, 6 views, 10 classes), "
          f"70/30 stratified split, K={k}, missing rates {', '.join(f'{r:g}' for r in rates)}, "
          f"{seeds} seed(s); imputers: {', '.join(IMPUTERS[i] for i in imputers)}", flush=True)
    if knn_seeds is not None and knn_seeds < seeds:
        which = "seed 0 only" if knn_seeds == 1 else f"the first {knn_seeds} seeds only"
        print(f"KNNImputer, the slow peer (about 100x slower per row than ul4m4), runs on {which}: "
              "--knn-seeds all runs it on every seed, --no-knn skips it", flush=True)
    elif "knn" not in imputers:
        print("KNNImputer skipped (--knn-seeds 1 or all to include it)", flush=True)
    t0 = time.perf_counter()

    def progress(done, total, info):
        if args.quiet:
            return
        what = ("complete data" if info["rate"] is None else f"missing {info['rate']:g}")
        knn = ", with KNNImputer" if info["knn"] else ""
        choice = info["results"].get("ul4m4_auto", {}).get("choice")
        knn += f", auto chose {choice}" if choice else ""
        left = "" if done == total else f", about {info['eta']:.0f} s left"
        print(f"  [{done:2d}/{total}] seed {info['seed']}, {what}{knn}: {info['seconds']:.1f} s "
              f"({info['elapsed']:.0f} s elapsed{left})", file=sys.stderr, flush=True)

    rows = run_protocol(rates=rates, seeds=seeds, n_clusters=k, imputers=imputers, n_threads=args.threads,
                        n_jobs=args.jobs, knn_seeds=knn_seeds, progress=progress)
    seconds = time.perf_counter() - t0
    print()
    print(format_table(rows))
    speed = _speed_line(rows)
    if speed:
        print(speed)
    doc = {
        "ul4m4_version": __version__,
        "protocol": {
            "dataset": "UCI Multiple Features (ul4m4.datasets.load_mfeat, float64)",
            "split": "train_test_split(test_size=0.3, stratify=y, random_state=seed)",
            "mask": "ul4m4.masking.missing_rate_mask(n, 6, rate, seed=seed), one mask for all rows",
            "rates": rates, "seeds": list(range(seeds)), "n_clusters": k, "imputers": imputers,
            "knn_seeds": "all" if knn_seeds is None else knn_seeds,
            "n_threads": args.threads, "n_jobs": args.jobs,
            "parallel": "(seed, rate) runs spread over worker processes (joblib/loky; --jobs, default: the CPUs "
                        "available); with several workers each run uses 1 ul4m4 thread unless --threads; "
                        "scikit-learn's BLAS runs single-threaded",
            "command": "ul4m4 " + " ".join(args.argv),
            "metrics": {m: lab for m, (lab, _, _) in METRICS.items()},
            "definitions": "see the docstring of ul4m4.evaluation",
            "std": "sample standard deviation over seeds (ddof=1)",
        },
        "seconds": seconds,
        "rows": rows,
    }
    json_path = out / "results.json"
    _atomic_write_text(json_path, json.dumps(doc, indent=1))
    print(f"\nwrote {json_path}")
    if not args.no_plot:
        png = out / "f1_vs_rate.png"
        tmp = png.with_name(f".{png.name}.partial-{os.getpid()}.png")
        if plot_results(rows, tmp):
            os.replace(tmp, png)
            print(f"wrote {png}")
        else:
            print("matplotlib is not installed: no plot written (pip install matplotlib)")
    print(f"total {seconds:.1f} s")
    return 0


def _speed_line(rows) -> str:
    from .evaluation import _UL4M4_MODES

    def mean(imp, rate):
        for r in rows:
            if r["imputer"] == imp and r["rate"] == rate and r["metric"] == "rows_per_s":
                return r["mean"]
        return None

    ratios = []
    for rate in dict.fromkeys(r["rate"] for r in rows):
        knn = mean("knn", rate)
        for imp in _UL4M4_MODES:
            u = mean(imp, rate)
            if knn and u:
                ratios.append(u / knn)
    if not ratios:
        return ""
    return (f"completion speed: ul4m4 completes {min(ratios):,.0f}x to {max(ratios):,.0f}x more rows per second "
            "than KNNImputer (every mode and rate)")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------- fit
def cmd_fit(args) -> int:
    from . import ConvergenceWarning, UL4M4Imputer
    from .outofcore import Progress, fit_streaming

    names, arrays, mask, sources = load_inputs(args)
    out = Path(args.output)
    if out.is_dir():
        raise CLIError(f"{out}: is a directory; -o/--output names the model file to write")
    if not out.parent.exists():
        raise CLIError(f"{out.parent}: no such directory (for -o/--output)")
    for opt, v in (("--chunk-rows", args.chunk_rows), ("--max-rows", args.max_rows), ("--init-rows", args.init_rows)):
        if v is not None and v < 1:
            raise CLIError(f"{opt} must be >= 1")
    n, M = arrays[0].shape[0], len(arrays)
    sub = f", on a random sample of {min(n, args.max_rows)} rows (--max-rows)" \
        if args.max_rows is not None and args.max_rows < n else ""
    _info(args, f"fitting K={args.n_clusters} on {n} rows x {M} modalit{'y' if M == 1 else 'ies'} "
                f"({', '.join(f'{nm}: {a.shape[1]}' for nm, a in zip(names, arrays))}){sub}")
    imp = UL4M4Imputer(args.n_clusters, n_init=args.n_init, max_iter=args.max_iter, tol=args.tol,
                       completion=args.completion, temperature_scale=args.temperature_scale,
                       temperature=args.temperature, empty_rows=args.empty_rows, random_state=args.seed,
                       n_threads=args.threads)
    bar = Progress(n, "statistics", enabled=_progress_enabled(args))
    t0 = time.perf_counter()

    def callback(it, inertia, n_changed, shift, secs):
        # after each Lloyd iteration: a line of its own (the bar redraws the passes)
        if _progress_enabled(args):
            bar.close(final=True)
            print(f"k-means iteration {it}/{args.max_iter}: inertia {inertia:.6g}, {n_changed} rows changed, "
                  f"max centre shift {shift:.3g}, {secs:.2f} s", file=sys.stderr, flush=True)
        return True

    # The data is read in chunks (memory-mapped .npy files never need to fit in memory):
    # one pass for the statistics, one per Lloyd iteration.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit_streaming(imp, arrays, mask, chunk_rows=args.chunk_rows, max_rows=args.max_rows,
                      init_rows=args.init_rows, progress=bar, callback=callback)
    for w in caught:
        print(f"{PROG}: warning: {_cli_spelling(str(w.message))}", file=sys.stderr)
    secs = time.perf_counter() - t0
    try:
        imp.save(out)
    except OSError as exc:
        raise CLIError(f"{out}: cannot write the model ({exc.strerror or exc})") from None
    _info(args, f"fitted in {secs:.2f} s ({imp.n_iter_} iterations, inertia {imp.inertia_:.6g}, "
                f"{int((imp.labels_ < 0).sum())} unassignable rows); wrote {out}")
    return 0


# ---------------------------------------------------------------------------- impute
def cmd_impute(args) -> int:
    from . import UL4M4Imputer
    from .outofcore import Progress, transform_to_npy, transform_to_zarr

    if not Path(args.model).exists():
        raise CLIError(f"{args.model}: no such file (--model)")
    if Path(args.model).is_dir() or not zipfile.is_zipfile(args.model):
        raise CLIError(f"{args.model}: not a ul4m4 model file (expected the .npz written by 'ul4m4 fit')")
    try:
        imp = UL4M4Imputer.load(args.model)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    names, arrays, mask, sources = load_inputs(args)
    M, dims = imp.n_modalities_, tuple(imp.modality_dims_)
    got = tuple(a.shape[1] for a in arrays)
    if len(arrays) != M:
        raise CLIError(f"the model {args.model} was fitted on {M} modalities (widths {', '.join(map(str, dims))}) "
                       f"but {len(arrays)} were given ({', '.join(names)})")
    for m, (src, d, e) in enumerate(zip(sources, got, dims)):
        if d != e:
            raise CLIError(f"{src}: has width {d} but modality {m} of the model {args.model} has width {e} "
                           f"(the model expects widths {', '.join(map(str, dims))}, in that order)")
    if args.empty_rows is not None:
        imp.empty_rows = args.empty_rows
    if args.threads is not None:
        imp.n_threads = args.threads
    completion = args.completion or imp.completion
    for opt, v in (("--temperature-scale", args.temperature_scale), ("--temperature", args.temperature)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise CLIError(f"{opt} must be a finite number > 0, got {v}")
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise CLIError("--chunk-rows must be >= 1")
    out_dir = _check_out_dir(Path(args.out_dir), args.format)

    n = arrays[0].shape[0]
    bar = Progress(n, "impute", enabled=_progress_enabled(args))
    # The whole result (arrays and manifest) is written into a fresh directory beside
    # --out-dir and swapped in at the end (_commit): at every moment --out-dir holds the
    # previous complete result or the new one, never a mix. Chunk by chunk, the working set
    # is a few chunks whatever n (ul4m4.outofcore).
    kw = dict(names=names, mask=mask, chunk_rows=args.chunk_rows, completion=completion,
              temperature_scale=args.temperature_scale, temperature=args.temperature,
              progress=_test_hooked(bar))
    with _Signals() as sig:
        _test_pause("start")
        tmp = _fresh_dir(out_dir)
        try:
            try:
                if args.format == "zarr":
                    res = transform_to_zarr(imp, arrays, out_path=tmp / "completed.zarr", **kw)
                else:
                    res = transform_to_npy(imp, arrays, out_dir=tmp, **kw)
            except ImportError:  # transform_to_zarr checks for zarr before it reads anything
                if args.format != "zarr":
                    raise
                raise CLIError("--format zarr needs zarr: pip install zarr (or use --format npy)") from None
            except ValueError as exc:
                raise CLIError(str(exc)) from None
            except OSError as exc:
                raise CLIError(f"cannot write beside {out_dir} ({exc.strerror or exc})") from None
            secs = res["seconds"]
            n_imp, n_unf = res["n_imputed"], res["n_unfilled"]
            if args.format == "zarr":
                files = ["completed.zarr"]
                masks = ("completed.zarr/imputed_mask, completed.zarr/unfilled_mask: (n_samples, n_modalities) bool, "
                         "columns in the order of 'modalities'")
            else:
                files = [Path(p).name for p in res["files"]]
                masks = ("imputed_mask.npy / unfilled_mask.npy: (n_samples, n_modalities) bool, columns in the order "
                         "of 'modalities'")
            manifest = {"model": str(args.model), "modalities": names, "sources": sources, "n_samples": n,
                        "completion": completion, "imputed_slots": n_imp, "unfilled_slots": n_unf,
                        "format": args.format, "files": files, "masks": masks}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
            _test_pause("written")
            with sig.deferred():  # a signal now takes effect once the swap is complete
                _commit(tmp, out_dir)
        finally:
            with sig.deferred():
                _remove_tree(tmp)
    _info(args, f"completed {n} rows in {secs:.2f} s ({n / max(secs, 1e-9):,.0f} rows/s): {n_imp} slots imputed, "
                f"{n_unf} unfilled; wrote {', '.join(files)} to {out_dir}")
    if n_unf:
        print(f"{PROG}: warning: {n_unf} missing slot(s) could not be completed from the centres and hold the "
              "training mean (see unfilled_mask.npy)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- atomic output
# --out-dir is replaced as a whole: the new result is built in .<name>.partial-<pid> beside it
# and exchanged with it in one step (renameat2 RENAME_EXCHANGE on Linux); elsewhere, two
# renames through .<name>.old-<pid>, undone if the second fails and repaired by the next run
# if the process dies between them. Leftovers of a killed run (SIGKILL) carry the dead PID in
# their name and are removed by the next run.
_OURS = ("manifest.json", "imputed_mask.npy", "unfilled_mask.npy", "completed.zarr")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, another user's
        return True
    return True


def _leftover_pid(name: str, stem: str) -> Optional[int]:
    """The PID in '.<stem>.partial-<pid>' / '.<stem>.old-<pid>' (None for other names)."""
    for kind in (".partial-", ".old-"):
        pre = f".{stem}{kind}"
        if name.startswith(pre) and name[len(pre):].isdigit():
            return int(name[len(pre):])
    return None


def _clean_leftovers(out_dir: Path) -> None:
    """Remove what killed runs left beside out_dir; first put back a previous result that a
    run killed between its two fallback renames left under .<name>.old-<pid>."""
    parent, stem = out_dir.parent, out_dir.name
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return
    for e in entries:
        pid = _leftover_pid(e, stem)
        if pid is None or _pid_alive(pid):
            continue
        if ".old-" in e and not os.path.lexists(out_dir):
            try:
                os.rename(parent / e, out_dir)
                continue
            except OSError:
                pass
        _remove_tree(parent / e)


def _is_leftover_file(name: str) -> bool:
    """'.<file>.partial-<pid>' written inside the directory by an older ul4m4, its PID dead."""
    head, sep, pid = name.rpartition(".partial-")
    return bool(sep) and name.startswith(".") and pid.isdigit() and not _pid_alive(int(pid))


def _check_out_dir(out_dir: Path, fmt: str) -> Path:
    """The absolute --out-dir to replace, after checking that replacing it loses nothing: it
    must not exist, be empty, or hold only a previous result of ul4m4 impute."""
    out_dir = Path(os.path.abspath(out_dir))
    if os.path.islink(out_dir):
        out_dir = Path(os.path.realpath(out_dir))
    if out_dir.parent == out_dir:
        raise CLIError(f"{out_dir}: cannot be the output directory (--out-dir); name a directory to create or replace")
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"{out_dir}: exists and is not a directory (--out-dir)")
    _clean_leftovers(out_dir)
    if not out_dir.is_dir():
        return out_dir
    ours = set(_OURS)
    try:
        ours.update(str(f) for f in json.loads((out_dir / "manifest.json").read_text()).get("files", []))
    except (OSError, ValueError, AttributeError, TypeError):
        pass

    def is_ours(e: str) -> bool:
        if _is_leftover_file(e):
            return True
        if e not in ours:
            return False
        p = out_dir / e
        return p.is_dir() if e == "completed.zarr" else not p.is_dir()  # a directory squatting on a file name: not ours

    foreign = sorted(e for e in os.listdir(out_dir) if not is_ours(e))
    if foreign:
        raise CLIError(f"{out_dir}: holds files that are not a result of 'ul4m4 impute' (e.g. {foreign[0]!r}); the "
                       "command replaces the output directory as a whole, so that it always holds one complete "
                       "result: choose a new or empty --out-dir")
    if fmt == "zarr" and (out_dir / "completed.zarr").exists():
        raise CLIError(f"{out_dir / 'completed.zarr'}: already exists; remove it or choose another --out-dir")
    return out_dir


def _fresh_dir(out_dir: Path) -> Path:
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
        _remove_tree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise CLIError(f"{out_dir}: cannot create the output directory ({exc.strerror or exc})") from None
    return tmp


def _remove_tree(p: Path) -> None:
    import shutil

    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError:
            pass


_RENAME_EXCHANGE = 2
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if not sys.platform.startswith("linux") or os.environ.get("UL4M4_NO_RENAME_EXCHANGE"):
        return False
    if _renameat2 is None:
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            f = libc.renameat2
            f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            f.restype = ctypes.c_int
            _renameat2 = f
        except (OSError, AttributeError):
            _renameat2 = False
    if not _renameat2:
        return False
    import ctypes

    AT_FDCWD = -100
    if _renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    import errno

    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _commit(tmp: Path, out_dir: Path) -> None:
    """Make the complete result in `tmp` the content of `out_dir` in one step; `tmp` then
    holds the previous content (removed by the caller)."""
    try:
        if not os.path.lexists(out_dir):
            os.rename(tmp, out_dir)
            return
        _test_pause("commit")
        if _exchange(tmp, out_dir):
            return
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
        try:
            _test_pause("between-renames")
            os.rename(tmp, out_dir)
        except BaseException:
            os.rename(old, out_dir)  # undo: the previous result stays
            raise
        os.rename(old, tmp)
    except OSError as exc:
        raise CLIError(f"{out_dir}: cannot replace the output directory ({exc.strerror or exc}); it still holds "
                       "the previous result") from None


# ---------------------------------------------------------------------------- signals
class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: partial files removed, exit status 143."""


class _Signals:
    """SIGINT and SIGTERM raise in the main thread (the compiled core polls for them), except
    inside ``deferred()`` blocks, where they are held until the block ends."""

    def __init__(self):
        self.depth = 0
        self.pending: Optional[int] = None
        self.saved = {}

    def _handler(self, signum, frame):
        global _signal_pending
        if self.depth:
            self.pending = self.pending or signum
            _signal_pending = True
            return
        self._raise(signum)

    @staticmethod
    def _raise(signum):
        import signal

        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.saved[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        import signal

        for s, h in self.saved.items():
            signal.signal(s, h)
        return False

    def deferred(self):
        import contextlib

        @contextlib.contextmanager
        def block():
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if not self.depth and self.pending is not None:
                    signum, self.pending = self.pending, None
                    self._raise(signum)

        return block()


# ---------------------------------------------------------------------------- test hooks
_signal_pending = False


def _test_pause(point: str) -> None:
    """UL4M4_TEST_PAUSE=<point>: announce the point on stderr and wait there (up to 60 s),
    so that a test can send a signal at a known place. Not for production use."""
    if os.environ.get("UL4M4_TEST_PAUSE") != point:
        return
    print(f"ul4m4-test: at {point}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + float(os.environ.get("UL4M4_TEST_PAUSE_S", "60"))
    while time.monotonic() < deadline and not _signal_pending:  # a deferred signal ends the pause
        time.sleep(0.01)


def _test_hooked(progress):
    """The progress callback, with the 'chunk' test point after the first completed chunk."""
    if os.environ.get("UL4M4_TEST_PAUSE") != "chunk":
        return progress
    seen = []

    def hooked(done, total, what="rows"):
        progress(done, total, what)
        if what == "completion" and not seen:
            seen.append(done)
            _test_pause("chunk")

    return hooked


# ---------------------------------------------------------------------------- messages
# The library's messages name Python parameters; on the command line the flags are named.
_SPELLING = [
    (r"\bempty_rows='(\w+)'", r"--empty-rows \1"),
    (r"\bn_clusters=(\d+)", r"-k/--n-clusters \1"),
    (r"\bn_clusters\b", "-k/--n-clusters"),
    (r"\bmax_iter=(\d+)", r"--max-iter \1"),
    (r"\bmax_iter\b", "--max-iter"),
    (r"\bor tol\b", "or --tol"),
    (r"\bn_init\b", "--n-init"),
    (r"\btemperature_scale\b", "--temperature-scale"),
    (r"\brandom_state\b", "--seed"),
    (r"\bn_threads\b", "--threads"),
    (r"invert it \(~mask, or 1 - mask\)", "invert the mask file"),
]


def _cli_spelling(msg: str) -> str:
    import re

    for pat, rep in _SPELLING:
        msg = re.sub(pat, rep, msg)
    return msg


# ---------------------------------------------------------------------------- parser
def _rates(text: str) -> List[float]:
    try:
        vals = [float(t) for t in text.replace(" ", ",").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not vals or any(not math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"not a list of finite numbers: {text!r}")
    return vals


def _knn_seeds(text: str) -> str:
    if text == "all" or (text.isdigit() and int(text) >= 0):
        return text
    raise argparse.ArgumentTypeError(f"expected a number of seeds >= 0 or 'all', got {text!r}")


class _Formatter(argparse.HelpFormatter):
    """Shows '(default: X)' only for options with a meaningful default."""

    def _get_help_string(self, action):
        h = action.help or ""
        if ("default" in h or action.nargs == 0 or not action.option_strings
                or action.default in (None, False, argparse.SUPPRESS)):
            return h
        return h + " (default: %(default)s)"


def _add_inputs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input data")
    g.add_argument("--modality", action="append", metavar="FILE.npy",
                   help="one 2-D float32/float64 array (n_samples, width) per modality; repeat the option "
                        "for each modality, in order. Output files are named after these files.")
    g.add_argument("--data", metavar="FILE.npz", help="one .npz archive with a key per modality (instead of --modality)")
    g.add_argument("--keys", metavar="A,B,...", help="with --data: the keys to use, in this order (default: all "
                                                     "keys, sorted, except --mask-key)")
    g.add_argument("--mask", metavar="MASK.npy",
                   help="(n_samples, n_modalities) presence mask: boolean, True = observed, or integers 0/1, 1 = "
                        "observed. Without a mask, a missing modality of a row must be all NaN.")
    g.add_argument("--mask-key", metavar="KEY", help="with --data: the key of the archive holding the mask")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads of the compiled core (default: all this process may use)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ul4m4`` command (subcommands demo, fit, impute)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="Fill missing modality embeddings without labels (UL4M4: masked k-means on "
                               "a partial-modality distance, then completion from the cluster centres).",
        epilog="Run 'ul4m4 COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser(
        "demo", help="compare ul4m4 with mean-fill, zero-fill and KNNImputer on the shipped data",
        description="On the shipped UCI Multiple Features data (2000 rows, 6 views, 10 classes): hide modality "
                    "slots at several missing rates, fit every imputer on a 70/30 stratified training split, "
                    "complete train and test, and report downstream test F1-micro (logistic regression on the "
                    "completed, standardised, concatenated views), the RMSE of the imputed test slots in "
                    "normalised space, completion speed and fit time, mean ± std over seeds, with the "
                    "complete-data score as the ceiling. Writes results.json and f1_vs_rate.png. "
                    "The default run (3 rates x 3 seeds, KNNImputer on the first seed only) needs 40-75 s of "
                    "CPU time in all, by CPU. With 2 worker processes that is 20-40 s on 2 otherwise idle cores. "
                    "Each finished run prints a progress line with an estimate of the time left.",
        formatter_class=_Formatter)
    d.add_argument("--out", default="ul4m4-demo", metavar="DIR", help="output directory")
    d.add_argument("--rates", type=_rates, default=None, metavar="R1,R2,...",
                   help="missing rates (fraction of missing modality slots, at most 5/6) "
                        "[default: 0.3,0.5,0.66; with --quick: 0.5]")
    d.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="seeds 0..N-1 (split, mask and k-means++) [default: 3; with --quick: 1]")
    d.add_argument("--clusters", "-k", type=int, default=40, metavar="K", help="number of clusters of ul4m4")
    d.add_argument("--quick", action="store_true",
                   help="one seed and one rate (0.5), unless --seeds / --rates are given")
    d.add_argument("--imputers", metavar="A,B,...",
                   help="subset of: ul4m4_greedy, ul4m4_soft, ul4m4_soft16, ul4m4_auto, mean, zero, knn, complete "
                        "(default: all)")
    d.add_argument("--knn-seeds", type=_knn_seeds, default="1", metavar="N|all",
                   help="run KNNImputer (the slow peer, most of the run time) on the first N seeds only, or on "
                        "all of them [default: 1]")
    d.add_argument("--no-knn", action="store_true", help="skip KNNImputer (same as --knn-seeds 0)")
    d.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    d.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes [default: the CPUs available]; 1 runs in this process")
    d.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads of the ul4m4 core per run (default: 1 with several workers, else all)")
    d.add_argument("-q", "--quiet", action="store_true", help="no per-run progress lines")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser(
        "fit", help="fit a model on a dataset (.npy per modality or one .npz) and save it",
        description="Fit the normalisation and the masked k-means centres on a dataset with missing "
                    "modalities and write the model file (.npz, no pickle).",
        epilog="example: ul4m4 fit --modality text.npy --modality audio.npy --mask mask.npy -k 40 "
               "--completion soft -o model.npz",
        formatter_class=_Formatter)
    _add_inputs(f)
    g = f.add_argument_group("model")
    g.add_argument("-k", "--n-clusters", type=int, default=8, metavar="K", help="number of clusters")
    g.add_argument("--completion", choices=("greedy", "soft"), default="greedy",
                   help="completion stored in the model: 'greedy' (the paper's) or 'soft' (distance-weighted "
                        "mean of centres; safer for downstream classifiers)")
    g.add_argument("--temperature-scale", type=float, default=1.0, metavar="S",
                   help="soft completion: temperature = S x median squared distance to the centres "
                        "(1: downstream-safe; 1/16 = 0.0625: lowest reconstruction error measured)")
    g.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="soft completion: an absolute temperature (overrides --temperature-scale)")
    g.add_argument("--n-init", type=int, default=1, metavar="N", help="k-means++ restarts")
    g.add_argument("--max-iter", type=int, default=300, metavar="N", help="Lloyd iterations at most")
    g.add_argument("--tol", type=float, default=1e-4, help="stop when the largest centre shift is <= tol")
    g.add_argument("--seed", type=int, default=0, help="random seed of k-means++")
    g.add_argument("--empty-rows", choices=("error", "mean"), default="error",
                   help="rows with no observed modality: an error, or ignored by the fit")
    g = f.add_argument_group("large data")
    g.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="rows read per step; every pass streams the files in chunks (default: 32 MiB of input "
                        "per chunk)")
    g.add_argument("--max-rows", type=int, default=None, metavar="N",
                   help="fit on a uniform random sample of at most N rows (default: every row)")
    g.add_argument("--init-rows", type=int, default=None, metavar="N",
                   help="rows sampled for k-means++ seeding only (default: min(n, max(20000, 50 K)); the Lloyd "
                        "iterations use every row)")
    f.add_argument("-o", "--output", required=True, metavar="MODEL.npz", help="model file to write")
    _add_common(f)
    f.set_defaults(func=cmd_fit)

    i = sub.add_parser(
        "impute", help="complete a dataset with a fitted model",
        description="Complete the missing modalities of a dataset with a model written by 'ul4m4 fit'. "
                    "Writes <name>.npy per modality (observed values unchanged, same dtype), "
                    "imputed_mask.npy and unfilled_mask.npy ((n_samples, n_modalities) bool) and "
                    "manifest.json into --out-dir. --out-dir is replaced as a whole, in one step, once the new "
                    "result is complete (it must be new, empty or a previous result of this command): after an "
                    "error, Ctrl-C or SIGTERM it holds the previous result, never a mix. "
                    "Inputs are read memory-mapped and processed in chunks of rows.",
        epilog="example: ul4m4 impute --model model.npz --modality text.npy --modality audio.npy "
               "--mask mask.npy --out-dir completed/",
        formatter_class=_Formatter)
    i.add_argument("--model", required=True, metavar="MODEL.npz", help="model file written by 'ul4m4 fit'")
    _add_inputs(i)
    i.add_argument("--out-dir", required=True, metavar="DIR", help="directory for the completed arrays")
    i.add_argument("--format", choices=("npy", "zarr"), default="npy",
                   help="npy: one .npy file per array; zarr: one zarr group DIR/completed.zarr holding them "
                        "(needs zarr: pip install zarr)")
    g = i.add_argument_group("completion (default: the model's settings)")
    g.add_argument("--completion", choices=("greedy", "soft"), default=None)
    g.add_argument("--temperature-scale", type=float, default=None, metavar="S")
    g.add_argument("--temperature", type=float, default=None, metavar="T")
    g.add_argument("--empty-rows", choices=("error", "mean"), default=None,
                   help="rows with no observed modality: an error, or filled with the training mean "
                        "(reported unfilled)")
    i.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="rows read, completed and written per step (default: 32 MiB of input per chunk); "
                        "memory is about 5 chunks whatever the dataset's size")
    _add_common(i)
    i.set_defaults(func=cmd_impute)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input or usage, 1 other failure)."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(raw)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    args.argv = raw
    if getattr(args, "threads", None) is not None and args.threads < 1:
        print(f"{PROG}: error: --threads must be >= 1", file=sys.stderr)
        return 2
    debug = os.environ.get("UL4M4_TRACEBACK", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {_cli_spelling(str(exc))}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:  # invalid data or parameters reported by the library
        if debug:
            raise
        print(f"{PROG}: error: {_cli_spelling(str(exc))}", file=sys.stderr)
        return 2
    except ImportError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {_cli_spelling(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {_cli_spelling(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        term = isinstance(exc, _Terminated)
        print(f"\n{PROG}: {'terminated' if term else 'interrupted'}", file=sys.stderr)
        return 143 if term else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
