"""Training throughput benchmark: env steps per second of pglab's algorithms.

All measurements of one invocation run in one process, one after another, so their
ratios are comparable even on a shared, noisy machine. Each case builds the real config
(Hydra compose over ``conf/``), the env and the agent, runs one warm-up update, then
times ``agent.learn`` for ``--steps`` env steps (no evaluation, no logging).

    python scripts/bench.py                                   # reinforce on mountaincar, cartpole; 1 and 16 envs
    python scripts/bench.py --envs cartpole --num-envs 1 16 64 --steps 50000 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from pglab.config import validate
from pglab.envs import make_vec_env
from pglab.experiment import build_agent, seed_everything

CONF = Path(__file__).resolve().parents[1] / "conf"


def measure(algo: str, env_name: str, num_envs: int, steps: int, seed: int) -> dict:
    """Env steps/s of ``algo`` training on ``env_name`` with ``num_envs`` envs (one thread)."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = validate(
            compose(
                "config", [f"algo={algo}", f"env={env_name}", f"env.num_envs={num_envs}", "logger=none", f"seed={seed}"]
            )
        )
    torch.set_num_threads(max(cfg.hardware.num_threads, 1))
    seed_everything(seed)
    device = torch.device("cpu")
    env = make_vec_env(cfg.env, num_envs, seed=seed, device=device)
    agent = build_agent(cfg, env, device)
    agent.learn(env, 1, lambda u: True)  # warm-up: one update (allocations, first-call overheads)
    start_steps = agent.env_steps
    t0 = time.perf_counter()
    agent.learn(env, start_steps + steps, lambda u: True)
    elapsed = time.perf_counter() - t0
    env.close()
    done = agent.env_steps - start_steps
    return {
        "algo": algo,
        "env": env_name,
        "num_envs": num_envs,
        "env_steps": done,
        "seconds": elapsed,
        "sps": done / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["reinforce"])
    parser.add_argument("--envs", nargs="+", default=["mountaincar", "cartpole"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--steps", type=int, default=30_000, help="timed env steps per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args(argv)
    if args.steps < 1 or any(n < 1 for n in args.num_envs):
        parser.error("--steps and --num-envs must be >= 1")

    rows = []
    for algo in args.algos:
        for env_name in args.envs:
            for n in args.num_envs:
                row = measure(algo, env_name, n, args.steps, args.seed)
                rows.append(row)
                print(f"{algo:>10} {env_name:>24} envs={n:<5} {row['sps']:>10,.0f} steps/s", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n| algo | env | num_envs | env steps/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['algo']} | {r['env']} | {r['num_envs']} | {r['sps']:,.0f} |")
    result = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "peak_rss_mb": peak_mb,
        "results": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\npeak RSS of the process: {peak_mb:.0f} MB; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
