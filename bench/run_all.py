"""Run every bench/bench_*.py in turn, each in a fresh Python process, and record how each one went.

Each benchmark writes its own figures to bench/results/<name>.json; this runner adds
bench/results/run_all.json (exit code and wall time per script). Benchmarks run one after the other, never
in parallel: on a 2-core machine they would measure each other.

    .venv/bin/python bench/run_all.py                        # all of them, default parameters
    .venv/bin/python bench/run_all.py --only api_points      # the scripts whose name contains "api_points"
    .venv/bin/python bench/run_all.py --list
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "run_all.json"


def discover(only: list[str]) -> list[Path]:
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    return [script for script in scripts if not only or any(word in script.stem for word in only)]


def run(script: Path) -> dict[str, object]:
    print(f"=== {script.name}", flush=True)
    started = time.perf_counter()
    # A fresh interpreter per benchmark: no warm caches, imports or heap carried over from the previous one.
    completed = subprocess.run([sys.executable, str(script)], cwd=BENCH_DIR.parent, check=False)
    seconds = time.perf_counter() - started
    print(f"=== {script.name}: exit {completed.returncode} after {seconds:.0f} s", flush=True)
    return {"script": script.name, "exit_code": completed.returncode, "wall_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", default=[], help="substring of the script names to run")
    parser.add_argument("--list", action="store_true", help="print the scripts that would run, run nothing")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    scripts = discover(args.only)
    if args.list:
        print("\n".join(script.name for script in scripts))
        return 0
    if not scripts:
        print("no benchmark matched", file=sys.stderr)
        return 2
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    outcomes = [run(script) for script in scripts]
    failed = [outcome["script"] for outcome in outcomes if outcome["exit_code"] != 0]
    record = {
        "started_at": started_at,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "benchmarks": outcomes,
        "failed": failed,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    summary = f"{len(outcomes)} benchmarks ran, {len(failed)} failed"
    print(summary + (": " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
