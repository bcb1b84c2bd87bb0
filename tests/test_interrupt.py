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
