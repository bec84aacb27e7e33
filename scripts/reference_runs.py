"""Fixed-seed reference runs of every algorithm on every env: record them, compare them.

A change that must not change what pglab computes (a refactor, a speed-up that promises
equal numerics) is checked by recording the runs before it and comparing after it::

    python scripts/reference_runs.py record /tmp/ref-before     # on the old code
    python scripts/reference_runs.py record /tmp/ref-after      # on the new code
    python scripts/reference_runs.py compare /tmp/ref-before /tmp/ref-after

``record`` runs ``run.py`` as a user would (Hydra, the real configs, each pair's tuned
file) on tiny budgets — a few updates, periodic evaluations, a checkpoint and the final
evaluation of every (algo, env) pair SB3 included — and writes ``reference.json``: each
run's ``metrics.jsonl`` lines without the timing keys, and its summary's final metrics.
``compare`` prints every difference and exits 1 if there is one. Values are compared
exactly: the same seed on the same machine must give the same bits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OURS = ("reinforce", "a2c", "ppo")
SB3 = ("sb3_a2c", "sb3_ppo")
ENVS = ("mountaincar", "mountaincar_continuous", "cartpole", "maze", "dialogue")
LM = ("env=dialogue_lm", "sft.steps=20", "sft.log_every=10")  # SB3 has no sequence policies
# keys that measure the machine, not the computation
TIMING_KEYS = ("time/sps", "time/wall_s", "sft/tokens_per_s")
SMALL = (
    "seed=3",
    "total_steps=6000",
    "log_every_steps=1000",
    "checkpoint_every_steps=3000",
    "eval.every_steps=3000",
    "eval.episodes=5",
    "eval.final_episodes=10",
    "logger=none",
)
# (name, overrides) of every sweep recorded; each sweep is one process (Hydra's basic launcher)
SWEEPS = (
    ("ours", (f"algo={','.join(OURS)}", f"env={','.join(ENVS)}")),
    ("lm", (f"algo={','.join(OURS)}", *LM)),
    ("sb3", (f"algo={','.join(SB3)}", f"env={','.join(ENVS)}")),
    (
        "gymnasium_backend",
        (f"algo={','.join(OURS)}", "env=mountaincar,mountaincar_continuous", "env.backend=gymnasium"),
    ),
    ("variants", ("algo=a2c", "env=cartpole", "algo.shared_network=true", "algo.normalize_obs=true,false")),
    ("groups", ("algo=reinforce", *LM, "algo.baseline=group_norm,mean")),
    ("ppo_variants", ("algo=ppo", "env=cartpole", "algo.clip_range_vf=0.2", "algo.target_kl=0.01")),
    ("ppo_groups", ("algo=ppo", *LM, "algo.baseline=leave_one_out")),
)


def record(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    for name, overrides in SWEEPS:
        sweep_dir = out / name
        cmd = [sys.executable, str(ROOT / "run.py"), "-m", *overrides, *SMALL, f"hydra.sweep.dir={sweep_dir}"]
        print("$", " ".join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
            return 1
        for summary_path in sorted(sweep_dir.glob("*/summary.json")):
            runs[f"{name}/{summary_path.parent.name}"] = read_run(summary_path.parent)
    (out / "reference.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    print(f"{len(runs)} runs recorded in {out / 'reference.json'}")
    return 0


def read_run(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "status": summary["status"],
        "final": summary.get("final"),
        "env_steps": summary.get("env_steps"),
        "solved_at_env_steps": summary.get("solved_at_env_steps"),
        "metrics": [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in lines],
    }


def compare(before: Path, after: Path) -> int:
    a = json.loads((before / "reference.json").read_text())
    b = json.loads((after / "reference.json").read_text())
    problems = [f"{key}: only in {before}" for key in sorted(set(a) - set(b))]
    problems += [f"{key}: only in {after}" for key in sorted(set(b) - set(a))]
    for key in sorted(set(a) & set(b)):
        if a[key] == b[key]:
            continue
        for field in ("status", "final", "env_steps", "solved_at_env_steps"):
            if a[key][field] != b[key][field]:
                problems.append(f"{key}: {field} {a[key][field]} != {b[key][field]}")
        rows_a, rows_b = a[key]["metrics"], b[key]["metrics"]
        if len(rows_a) != len(rows_b):
            problems.append(f"{key}: {len(rows_a)} metrics lines != {len(rows_b)}")
        for i, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=False)):
            if ra != rb:
                diff = {k: (ra.get(k), rb.get(k)) for k in set(ra) | set(rb) if ra.get(k) != rb.get(k)}
                problems.append(f"{key}: line {i}: {diff}")
                break
    for p in problems:
        print(p)
    print(f"{len(set(a) & set(b))} runs compared, {len(problems)} differences")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the reference runs into a folder")
    rec.add_argument("out", type=Path)
    cmp_ = sub.add_parser("compare", help="compare two recorded folders")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    return record(args.out) if args.command == "record" else compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
