"""The jitted JAX A2C anchor (``jax_a2c.py`` of the shared anchors folder) vmapped over seeds:
one compiled program trains every seed at once, as a seed table would run in JAX. The
compile seconds include the tracing (``lower``).

Runs only in a Python that has jax and gymnax (see ``scripts/bench.py --jax-python``); it
is never imported by pglab. Prints one JSON line: the compile seconds, the seconds of the
one call that trains every seed, and each seed's mean return over ``--eval-episodes``
deterministic episodes after training.

    .venv-jax/bin/python scripts/jax_seeds.py --anchor ../shared/anchors/jax_a2c.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType


def load_anchor(path: Path, argv: list[str]) -> ModuleType:
    """The anchor module, its own command line parsed from ``argv`` (it reads ``sys.argv``
    at import, and sets XLA's thread flags before it imports jax)."""
    spec = importlib.util.spec_from_file_location("jax_a2c", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    saved, sys.argv = sys.argv, [str(path), *argv]
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its flax modules look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.argv = saved
    return module


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anchor", type=Path, required=True, help="jax_a2c.py")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--total-steps", type=int, default=3_000_000, help="env steps per seed")
    p.add_argument("--eval-episodes", type=int, default=100)
    args = p.parse_args()
    anchor = load_anchor(args.anchor, ["--threads", str(args.threads), "--total-steps", str(args.total_steps)])
    jax = anchor.jax
    train, evaluate, num_updates = anchor.make_train(anchor.ARGS)
    keys = jax.numpy.stack([jax.random.PRNGKey(s) for s in args.seeds])
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    t1 = time.perf_counter()
    out = compiled(keys)
    jax.block_until_ready(out)
    t2 = time.perf_counter()
    evaluate_jit = jax.jit(evaluate, static_argnums=3)
    returns = []
    for i, seed in enumerate(args.seeds):
        params = jax.tree_util.tree_map(lambda x, i=i: x[i], out["params"])
        obs_rms = jax.tree_util.tree_map(lambda x, i=i: x[i], out["obs_rms"])
        key = jax.random.PRNGKey(10_000 + seed)
        returns.append(float(evaluate_jit(params, obs_rms, key, args.eval_episodes)))
    steps = num_updates * anchor.ARGS.num_envs * anchor.ARGS.n_steps
    result = {"seeds": args.seeds, "env_steps_per_seed": steps, "compile_s": t1 - t0, "train_s": t2 - t1}
    result |= {"xla_flags": os.environ.get("XLA_FLAGS", ""), "versions": _versions()}
    result |= {"eval_returns": returns, "eval_s": time.perf_counter() - t2}
    print(json.dumps(result))
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("jax", "gymnax", "flax", "optax")}


if __name__ == "__main__":
    sys.exit(main())
