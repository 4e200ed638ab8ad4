"""Run every bench/bench_*.py module's main() in name order and print their tables."""
from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback

import bench


def main(argv: list[str]) -> int:
    wanted = set(argv)  # optional module names (e.g. bench_riegeli) to run only those
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    failed = []
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"({name}: {time.perf_counter() - started:.1f} s)\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
