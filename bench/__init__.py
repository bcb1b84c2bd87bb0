"""Benchmarks of ul4m4 (not part of the installed package).

    python -m bench.compare --quick          # side-by-side comparison with peers
    python bench/core_workload.py            # the engine's reference workload
    pytest bench/ --benchmark-only           # microbenchmarks (pytest-benchmark)

See bench/README.md.
"""
