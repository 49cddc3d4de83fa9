"""Run every ``benchmarks/bench_*.py`` module's ``main()`` in name order.

``python -m benchmarks`` runs them all; ``python -m benchmarks bundle diode`` runs only the modules
whose names contain one of the given words. A failing benchmark prints its error and the runner goes
on with the next one; the exit status is 1 if any failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

PREFIX = "bench_"


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_*``), sorted."""
    here = str(Path(__file__).resolve().parent)
    return sorted(
        info.name
        for info in pkgutil.iter_modules([here])
        if info.name.startswith(PREFIX) and not info.ispkg
    )


def run(names: list[str]) -> list[str]:
    """Run ``main()`` of each module; returns the names of those that failed."""
    failed: list[str] = []
    for name in names:
        print(f"\n=== {name} " + "=" * max(3, 70 - len(name)), flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            module.main()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a benchmark calling sys.exit() must not stop the others
            if isinstance(exc, SystemExit) and exc.code in (None, 0):
                print(f"--- {name}: ok ({time.perf_counter() - started:.1f} s)", flush=True)
                continue
            traceback.print_exc(file=sys.stdout)
            print(f"--- {name}: FAILED ({type(exc).__name__}: {exc})", flush=True)
            failed.append(name)
        else:
            print(f"--- {name}: ok ({time.perf_counter() - started:.1f} s)", flush=True)
    return failed


def main(argv: list[str]) -> int:
    names = discover()
    if argv:
        names = [n for n in names if any(word in n for word in argv)]
        if not names:
            print(f"no benchmark matches {' '.join(argv)}", file=sys.stderr)
            return 2
    failed = run(names)
    print(
        f"\n{len(names)} benchmarks: {len(names) - len(failed)} ok, {len(failed)} failed",
        flush=True,
    )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
