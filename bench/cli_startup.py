"""CLI start-up cost: `hexaflow --help` and `hexaflow validate mappings/`, each as a ratio to a
bare `python -c pass` measured in the same run.

    python bench/cli_startup.py [--repeat 10] [--env-bytecode]

Runs each command ``--repeat`` times, alternating, and prints the median wall time of each and
the ratios. `validate` is measured twice: cold (every flow validated) and with a warm
`--cache` (filled by a run before timing; nothing changed since, so nothing is validated).

Bytecode: Python normally caches compiled modules (pip does it at install time). With
PYTHONDONTWRITEBYTECODE=1 in the environment, as in some sandboxes, an editable install
compiles hexaflow's own modules again on every start. By default every command here runs with
bytecode cached in a temporary folder (PYTHONPYCACHEPREFIX, after one untimed round), as an
installed hexaflow runs; ``--env-bytecode`` keeps the environment's setting instead.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--env-bytecode", action="store_true",
                        help="keep the environment's bytecode setting (see the docstring)")
    args = parser.parse_args()
    hexaflow = shutil.which("hexaflow") or str(Path(sys.executable).parent / "hexaflow")
    mappings = str(ROOT / "mappings")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "hexaflow --help": [hexaflow, "--help"],
        "hexaflow validate mappings/ (cold)": [hexaflow, "validate", mappings],
        "hexaflow validate --cache mappings/ (warm)": [hexaflow, "validate", "--cache", mappings],
    }
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(os.environ, HEXAFLOW_CACHE_DIR=os.path.join(scratch, "cache"))
        if not args.env_bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(scratch, "pycache")
        print(f"load average {_load()}; bytecode "
              f"{'as the environment has it' if args.env_bytecode else 'cached'}")
        for command in commands.values():      # compiles bytecode, fills the validate cache
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<44} {median * 1000:8.1f} ms   {median / base:5.1f}x bare Python")
    print(f"load average {_load()}")
    return 0


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
