"""CLI start-up cost: `hexaflow --help` and `hexaflow validate mappings/`, each as a ratio to a
bare `python -c pass` measured in the same run.

    python bench/cli_startup.py [--repeat 10]

Runs each command ``--repeat`` times, alternating, and prints the median wall time of each and
the ratios.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    hexaflow = shutil.which("hexaflow") or str(Path(sys.executable).parent / "hexaflow")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "hexaflow --help": [hexaflow, "--help"],
        "hexaflow validate mappings/": [hexaflow, "validate", str(ROOT / "mappings")],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<30} {median * 1000:8.1f} ms   {median / base:5.1f}x bare Python")
    return 0


if __name__ == "__main__":
    sys.exit(main())
