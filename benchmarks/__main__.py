"""Runs every `bench_*.py` module in its own process, so one's memory does not skew another's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    modules = sorted(Path(__file__).parent.glob("bench_*.py"))
    failed = []
    for path in modules:
        name = f"benchmarks.{path.stem}"
        print(f"\n=== {name}", flush=True)
        if subprocess.call([sys.executable, "-m", name]) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
