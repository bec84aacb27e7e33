"""Sweep launchers compared: wall time of the same sweep under each, and per-job overhead.

For each launcher it runs ``python run.py -m ...`` twice, back to back in one session so
the ratios are comparable on a noisy machine:

* **short** — ``--jobs`` real but short runs (REINFORCE on CartPole, ``--steps`` env steps each);
* **empty** — the same number of jobs doing almost nothing (100 env steps, 1-episode
  evaluations): its wall time per job is the launcher's overhead (process start, imports,
  W&B off, Hydra composition, submission and polling).

Launchers: ``basic`` (Hydra's default, one job after another in this process), ``joblib``
(hydra-joblib-launcher, one job per core), and ``slurm`` when ``--slurm`` is given and a
cluster answers (``hardware=slurm``; start a test cluster with ``scripts/slurm/start.sh``).

    python scripts/bench_launchers.py --jobs 8 --steps 20000
    python scripts/bench_launchers.py --jobs 8 --slurm --partition debug   # with a SLURM cluster
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib"],
    "slurm": ["hardware=slurm", "hardware.cluster.time_limit_min=10", "hardware.cluster.mem_gb=1"],
}


def sweep(launcher: str, jobs: int, steps: int, work: str, partition: str | None, out: Path) -> float:
    """Wall seconds of one multirun of ``jobs`` jobs."""
    seeds = ",".join(str(i) for i in range(jobs))
    args = [*LAUNCHERS[launcher], "env=cartpole", "algo=reinforce", f"seed={seeds}", "logger=none"]
    if work == "short":
        args += [f"total_steps={steps}", f"eval.every_steps={steps}", "eval.final_episodes=10"]
    else:
        args += ["total_steps=100", "eval.episodes=1", "eval.final_episodes=1", "eval.num_envs=1"]
    if launcher == "slurm" and partition:
        args.append(f"hardware.cluster.partition={partition}")
    env = {**os.environ, "PATH": f"{ROOT / 'scripts' / 'slurm' / 'bin'}:{os.environ['PATH']}"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", *args, f"hydra.sweep.dir={out}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=out.parent,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{launcher}/{work} sweep failed:\n{proc.stderr[-3000:]}")
    done = len(list(out.glob("*/summary.json")))
    if done != jobs:
        raise SystemExit(f"{launcher}/{work}: {done} of {jobs} jobs wrote a summary")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps of each short run")
    parser.add_argument("--slurm", action="store_true", help="also through SLURM (a cluster must be up)")
    parser.add_argument("--partition", default=None, help="SLURM partition")
    parser.add_argument("--out", type=Path, default=Path("bench_launchers.json"))
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.steps < 1:
        parser.error("--jobs and --steps must be >= 1")
    launchers = ["basic", "joblib"] + (["slurm"] if args.slurm else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for launcher in launchers:
            for work in ("short", "empty"):
                wall = sweep(launcher, args.jobs, args.steps, work, args.partition, Path(tmp) / f"{launcher}-{work}")
                rows.append({"launcher": launcher, "work": work, "jobs": args.jobs, "wall_s": wall})
                print(f"{launcher:>7} {work:>6}: {wall:7.1f} s for {args.jobs} jobs", flush=True)
    basic_short = next(r["wall_s"] for r in rows if r["launcher"] == "basic" and r["work"] == "short")
    print(f"\n| launcher | {args.jobs} short runs (wall s) | vs basic | empty jobs: wall s per job |")
    print("|---|---|---|---|")
    for launcher in launchers:
        short = next(r["wall_s"] for r in rows if r["launcher"] == launcher and r["work"] == "short")
        empty = next(r["wall_s"] for r in rows if r["launcher"] == launcher and r["work"] == "empty")
        print(f"| {launcher} | {short:.1f} | {basic_short / short:.2f}x | {empty / args.jobs:.2f} |")
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "steps": args.steps, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
