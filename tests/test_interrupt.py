"""Long calls release the GIL and stop on Ctrl-C (SIGINT -> KeyboardInterrupt)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent("""
    import sys, threading, time, numpy as np, ul4m4
    rng = np.random.default_rng(0)
    Xs = [rng.standard_normal((60000, 256), dtype=np.float32) for _ in range(2)]
    imp = ul4m4.UL4M4Imputer(64, max_iter=100000, tol=0.0, random_state=0, n_threads=1)
    ticks = []
    t = threading.Thread(target=lambda: [ticks.append(time.sleep(0.01)) for _ in range(30)], daemon=True)
    t.start()
    print("ready", flush=True)
    try:
        imp.fit(Xs)
    except KeyboardInterrupt:
        # the GIL was released: the other Python thread kept running during fit
        print("interrupted", len(ticks), flush=True)
        sys.exit(3)
    print("finished", flush=True)
""")


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigint_stops_fit_and_gil_is_released():
    p = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(1.5)  # inside fit (k-means++ or Lloyd)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    waited = time.monotonic() - t0
    assert p.returncode == 3, (out, err)
    assert "interrupted 30" in out, out
    assert waited < 5.0, f"took {waited:.1f} s to stop after SIGINT"


# ----------------------------------------------------------------------------- ul4m4 impute
# Killed at chosen points (UL4M4_TEST_PAUSE=<point> makes the command announce the point on
# stderr and wait there): it exits within two seconds, and --out-dir holds either the previous
# complete result or the new one with a manifest matching it; nothing else is left behind.
import json  # noqa: E402
import threading  # noqa: E402

import numpy as np  # noqa: E402

import ul4m4  # noqa: E402

NAMES = ("text", "audio")


@pytest.fixture(scope="module")
def impute_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("impute")
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(400, 6)).astype(np.float32), rng.normal(size=(400, 3))]
    P = rng.random((400, 2)) < 0.7
    P[~P.any(axis=1), 0] = True
    for n, x in zip(NAMES, X):
        np.save(d / f"{n}.npy", x)
    np.save(d / "mask.npy", P)
    imp = ul4m4.UL4M4Imputer(5, random_state=0).fit(X, mask=P)
    imp.save(d / "model.npz")
    expected = {c: imp.transform(X, mask=P, completion=c) for c in ("greedy", "soft")}
    return d, expected


def _argv(d, out, completion):
    return [sys.executable, "-m", "ul4m4", "impute", "--model", str(d / "model.npz"),
            "--modality", str(d / "text.npy"), "--modality", str(d / "audio.npy"), "--mask", str(d / "mask.npy"),
            "--out-dir", str(out), "--chunk-rows", "50", "--completion", completion, "-q", "--no-progress"]


def _run(d, out, completion, env=None):
    r = subprocess.run(_argv(d, out, completion), capture_output=True, text=True, env=env, timeout=120)
    return r


def _env(**kw):
    e = dict(os.environ)
    e.pop("UL4M4_TEST_PAUSE", None)
    e.update({k: str(v) for k, v in kw.items()})
    return e


def _state(out, expected):
    """'absent', or the completion whose complete result --out-dir holds (asserting that the
    manifest lists exactly the files there and that they hold that result)."""
    if not out.exists():
        return "absent"
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(os.listdir(out)) == sorted(man["files"] + ["manifest.json"])
    ref = expected[man["completion"]]
    for n, r in zip(NAMES, ref):
        np.testing.assert_array_equal(np.load(out / f"{n}.npy"), r)
    return man["completion"]


def _leftovers(out):
    hidden = [p for p in os.listdir(out.parent) if p.startswith(f".{out.name}.")]
    inside = [p for p in os.listdir(out) if p.startswith(".")] if out.exists() else []
    return hidden + inside


def _kill_at(d, out, completion, point, sig, **env):
    p = subprocess.Popen(_argv(d, out, completion), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_env(UL4M4_TEST_PAUSE=point, **env))
    line = p.stderr.readline()
    assert line.strip() == f"ul4m4-test: at {point}", (line, p.stderr.read())
    t0 = time.monotonic()
    p.send_signal(sig)
    try:
        p.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail(f"ul4m4 impute did not end within 2 s of {sig!r} at {point!r}")
    waited = time.monotonic() - t0
    err = p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    return p.returncode, err, waited


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("point", ["start", "chunk", "written", "commit"])
@pytest.mark.parametrize("previous", [True, False])
def test_impute_killed_leaves_previous_or_new_result(impute_data, tmp_path, sig, point, previous):
    if point == "commit" and not previous:
        pytest.skip("without a previous result the commit is one rename: no point to stop at")
    d, expected = impute_data
    out = tmp_path / "out"
    if previous:
        assert _run(d, out, "greedy", _env()).returncode == 0
        assert _state(out, expected) == "greedy"
    rc, err, _ = _kill_at(d, out, "soft", point, sig)
    assert rc == (143 if sig == signal.SIGTERM else 130), err
    assert "Traceback" not in err
    # a signal during the swap takes effect once the new result is complete
    want = "soft" if point == "commit" else ("greedy" if previous else "absent")
    assert _state(out, expected) == want
    assert _leftovers(out) == []


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_impute_sigkill_leftovers_cleaned_by_next_run(impute_data, tmp_path):
    d, expected = impute_data
    out = tmp_path / "out"
    assert _run(d, out, "greedy", _env()).returncode == 0
    p = subprocess.Popen(_argv(d, out, "soft"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_env(UL4M4_TEST_PAUSE="chunk"))
    assert p.stderr.readline().strip() == "ul4m4-test: at chunk"
    p.kill()
    p.wait()
    p.stdout.close()
    p.stderr.close()
    assert _state(out, expected) == "greedy"
    assert _leftovers(out) == [f".out.partial-{p.pid}"]
    r = _run(d, out, "soft", _env())
    assert r.returncode == 0, r.stderr
    assert _state(out, expected) == "soft"
    assert _leftovers(out) == []


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_impute_two_rename_fallback_killed_between_renames(impute_data, tmp_path):
    """Without renameat2's exchange: SIGINT between the two renames is deferred (the new
    result is committed); SIGKILL there leaves the previous result under .out.old-PID, which
    the next run puts back before it replaces it."""
    d, expected = impute_data
    out = tmp_path / "out"
    assert _run(d, out, "greedy", _env()).returncode == 0
    rc, err, _ = _kill_at(d, out, "soft", "between-renames", signal.SIGINT, UL4M4_NO_RENAME_EXCHANGE=1)
    assert rc == 130 and _state(out, expected) == "soft" and _leftovers(out) == [], err
    p = subprocess.Popen(_argv(d, out, "greedy"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_env(UL4M4_TEST_PAUSE="between-renames", UL4M4_NO_RENAME_EXCHANGE=1))
    assert p.stderr.readline().strip() == "ul4m4-test: at between-renames"
    p.kill()
    p.wait()
    p.stdout.close()
    p.stderr.close()
    assert not out.exists() and (tmp_path / f".out.old-{p.pid}").is_dir()
    # a run refused on its options changes nothing; the next real run puts the previous result back first
    r = subprocess.run(_argv(d, out, "soft")[:-4] + ["--temperature", "-1"], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert r.returncode == 2
    assert not out.exists() and (tmp_path / f".out.old-{p.pid}").is_dir()
    r = _run(d, out, "greedy", _env(UL4M4_NO_RENAME_EXCHANGE=1))
    assert r.returncode == 0, r.stderr
    assert _state(out, expected) == "greedy" and _leftovers(out) == []


def test_impute_squatting_directory_refused_before_any_work(impute_data, tmp_path):
    """A directory squatting on an output name, or any file that is not a previous result:
    refused before any work, the previous result and its manifest left as they are."""
    d, expected = impute_data
    out = tmp_path / "out"
    assert _run(d, out, "greedy", _env()).returncode == 0
    (out / "text.npy").unlink()
    (out / "text.npy").mkdir()
    (out / "text.npy" / "keep").write_text("user data")
    before = sorted(os.listdir(out))
    r = _run(d, out, "soft", _env())
    assert r.returncode == 2 and "holds files that are not a result of 'ul4m4 impute'" in r.stderr, r.stderr
    assert "'text.npy'" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(out)) == before and (out / "text.npy" / "keep").read_text() == "user data"
    assert _leftovers(out) == []
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    r = _run(d, other, "soft", _env())
    assert r.returncode == 2 and "'notes.txt'" in r.stderr
    assert os.listdir(other) == ["notes.txt"]


# ----------------------------------------------------------------------------- threads
def test_writer_abort_drops_queued_items_and_never_blocks(monkeypatch):
    """abort() (an error, Ctrl-C or SIGTERM) returns while a write hangs, after at most
    ABORT_WAIT, and the items queued behind that write are never written."""
    from ul4m4 import _writers

    monkeypatch.setattr(_writers, "ABORT_WAIT", 0.5)
    gate, started, written, released = threading.Event(), threading.Event(), [], []

    def write(r0):
        started.set()
        gate.wait(30)
        written.append(r0)

    wt = _writers.WriterThread(write, depth=1)
    wt.put(0, lambda: released.append(0))
    assert started.wait(30)
    wt.put(1, lambda: released.append(1))  # queued behind the hanging write
    done = threading.Event()
    threading.Thread(target=lambda: (wt.abort(), done.set()), daemon=True).start()
    assert done.wait(30), "abort() blocked"
    gate.set()
    with pytest.raises(RuntimeError, match="aborted"):
        wt.finish()  # waits for the writer thread to end
    assert written == [0] and released == [0]


def test_prefetch_consumer_never_waits_on_a_dead_reader():
    """A read that dies, with any exception (SystemExit too), hands it to the consumer: the
    consumer never waits for a chunk that will not come."""
    from ul4m4._chunks import ChunkSource, Prefetch, row_ranges

    class Dying(ChunkSource):
        def read(self, r0, r1, *args, **kwargs):
            if r0 > 0:
                raise SystemExit("the reader died")
            return super().read(r0, r1, *args, **kwargs)

    pf = Prefetch(Dying([np.zeros((10, 2))]), row_ranges(10, 4), depth=1, pool=True, rows=4)
    got = []
    done = threading.Event()

    def consume():
        try:
            for r0, *_ in pf:
                got.append(r0)
        except SystemExit as exc:
            got.append(str(exc))
        finally:
            pf.close()
            done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(30), "the consumer waited forever"
    assert got == [0, "the reader died"]


def test_prefetch_close_never_waits_on_a_reader_without_buffers():
    """A consumer that stops while the reader waits for a buffer set it never hands back:
    close() wakes the reader and returns."""
    from ul4m4._chunks import ChunkSource, Prefetch, row_ranges

    src = ChunkSource([np.zeros((40, 2))])
    pf = Prefetch(src, row_ranges(40, 4), depth=1, pool=True, rows=4)  # 3 buffer sets, none released
    it = iter(pf)
    held = [next(it) for _ in range(3)]
    done = threading.Event()
    threading.Thread(target=lambda: (pf.close(), done.set()), daemon=True).start()
    assert done.wait(30), "close() blocked"
    assert [h[0] for h in held] == [0, 4, 8]
