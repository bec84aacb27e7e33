"""Training throughput benchmark: env steps per second of pglab's algorithms.

All measurements of one invocation run in one process, one after another, so their
ratios are comparable even on a shared, noisy machine. Each case builds the real config
(Hydra compose over ``conf/``), the env and the agent, runs one warm-up update, then
times ``agent.learn`` for ``--steps`` env steps (no evaluation, no logging).

    python scripts/bench.py                                   # reinforce on mountaincar, cartpole; 1 and 16 envs
    python scripts/bench.py --envs cartpole --num-envs 1 16 64 --steps 50000 --out bench.json
    python scripts/bench.py --env-only --envs maze dialogue --num-envs 1 64 1024   # the envs alone, random actions
    python scripts/bench.py --env-only --envs maze --set env.size=31 env.layout=random env.observation=local

``--env-only`` times the vector env alone: uniformly random actions (drawn in one
tensor call per step), ``--steps`` env steps in all (at least 100 batched steps).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch
from hydra import compose, initialize_config_dir

from pglab.config import Config, validate
from pglab.envs import make_vec_env
from pglab.experiment import build_agent, seed_everything

CONF = Path(__file__).resolve().parents[1] / "conf"


def load_config(algo: str, env_name: str, num_envs: int, seed: int, extra: list[str]) -> Config:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        overrides = [f"algo={algo}", f"env={env_name}", f"env.num_envs={num_envs}", "logger=none", f"seed={seed}"]
        return validate(compose("config", overrides + extra))


def measure_env(env_name: str, num_envs: int, steps: int, seed: int, extra: list[str]) -> dict:
    """Env steps/s of the vector env alone under uniformly random actions (one thread)."""
    cfg = load_config("reinforce", env_name, num_envs, seed, extra)
    torch.set_num_threads(max(cfg.hardware.num_threads, 1))
    env = make_vec_env(cfg.env, num_envs, seed=seed, device=torch.device("cpu"))
    space = env.single_action_space
    gen = torch.Generator().manual_seed(seed)
    if isinstance(space, gym.spaces.Discrete):

        def sample() -> torch.Tensor:
            return torch.randint(0, int(space.n), (num_envs,), generator=gen)
    else:
        low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)

        def sample() -> torch.Tensor:
            return low + (high - low) * torch.rand((num_envs, *space.shape), generator=gen)

    env.reset()
    for _ in range(10):  # warm-up
        env.step(sample())
    iterations = max(100, steps // num_envs)
    t0 = time.perf_counter()
    for _ in range(iterations):
        env.step(sample())
    elapsed = time.perf_counter() - t0
    env.close()
    done = iterations * num_envs
    return {
        "algo": "random",
        "env": env_name,
        "num_envs": num_envs,
        "env_steps": done,
        "seconds": elapsed,
        "sps": done / elapsed,
    }


def measure(algo: str, env_name: str, num_envs: int, steps: int, seed: int, extra: list[str] | None = None) -> dict:
    """Env steps/s of ``algo`` training on ``env_name`` with ``num_envs`` envs (one thread)."""
    cfg = load_config(algo, env_name, num_envs, seed, extra or [])
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
    parser.add_argument("--env-only", action="store_true", help="time the envs alone, random actions")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. env.size=31")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args(argv)
    if args.steps < 1 or any(n < 1 for n in args.num_envs):
        parser.error("--steps and --num-envs must be >= 1")

    rows = []
    for algo in ["random"] if args.env_only else args.algos:
        for env_name in args.envs:
            for n in args.num_envs:
                if args.env_only:
                    row = measure_env(env_name, n, args.steps, args.seed, args.set)
                else:
                    row = measure(algo, env_name, n, args.steps, args.seed, args.set)
                row["overrides"] = list(args.set)
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
