"""Every benchmark of the project in one command (``make bench``).

    PYTHONPATH=. .venv/bin/python -m benchmarks.run_all [--quick]

Runs each benchmark's ``main`` in turn, in this process, with ``--quick`` passed through, and
prints the wall time of each. Each benchmark prints its own table and writes its own results
under ``benchmarks/results/``. A failing benchmark does not stop the others; the exit status
is 1 if any raised or returned a non-zero status.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from collections.abc import Sequence

# Module names under ``benchmarks``; each has ``main(argv: list[str] | None)``, which may
# return an exit status (a non-zero int counts as a failure).
BENCHMARKS: tuple[str, ...] = ("performance", "accuracy")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's quick mode")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="benchmarks to run")
    args = parser.parse_args(argv)
    passed = ["--quick"] if args.quick else []
    failed: list[str] = []
    timings: list[tuple[str, float]] = []
    for name in args.only or BENCHMARKS:
        print(f"=== benchmarks.{name} {' '.join(passed)}".rstrip(), flush=True)
        start = time.perf_counter()
        try:
            status = importlib.import_module(f"benchmarks.{name}").main(list(passed))
        except Exception:  # report and go on with the next benchmark
            traceback.print_exc()
            status = 1
        if isinstance(status, int) and not isinstance(status, bool) and status != 0:
            failed.append(name)
        timings.append((name, time.perf_counter() - start))
        print(flush=True)
    for name, seconds in timings:
        status = "FAILED" if name in failed else "done"
        print(f"{name:<16} {status:<7} {seconds / 60:6.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
