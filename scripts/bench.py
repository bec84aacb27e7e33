"""pglab's speed benchmark: training throughput, time to solve MountainCar, peak memory.

Every measurement of one invocation runs on this machine, one after another, each case in
a fresh child process (one torch thread unless ``--threads``), so that the ratios in the
table compare like with like even on a shared, noisy machine, and each case's peak
memory is its own. Sections (``--sections``, all by default):

``throughput``
    Env steps per second of training (updates included; no evaluation, no logging) for
    reinforce, a2c and ppo on MountainCar-v0 at each one's tuned setting (torch backend)
    and with each env backend (``gymnasium``: one Python
    env per sub-env; ``torch``: pglab's batched MountainCar) at each ``--num-envs``, and
    for sb3_a2c and sb3_ppo with the RL Baselines3 Zoo setup (16 envs, VecNormalize,
    gymnasium backend), plus sb3_a2c on the torch backend (algorithm speed apart from
    env speed). Each case builds the real config (Hydra compose over ``conf/``, tuned
    settings included), runs one warm-up update, then trains for ``--seconds``.
``solve``
    Training seconds (evaluations excluded) until the deterministic policy's mean return
    over 100 evaluation episodes reaches -110, for a2c (its tuned MountainCar setting,
    ``conf/tuned/a2c_mountaincar.yaml``, torch backend) and for sb3_a2c (Zoo setup,
    gymnasium backend), seeds ``--seeds``. Both go through
    ``pglab.experiment.run`` with ``eval.stop_when_solved=true``, the same evaluation
    envs and seeds, an evaluation every ``--solve-eval-every`` steps. Then the whole seed
    table's wall time: those runs' processes summed, next to the jitted JAX A2C vmapped
    over the same seeds in one process (``scripts/jax_seeds.py``, ``--jax-steps`` each, no
    early stop: its seeds are judged by their final evaluation), when a JAX Python exists,
    and the seed table as one process: ``run.py -m hydra/launcher=vectorized`` (the seeds
    as one seed stack, each stopping at -110) next to one seed alone run the same way
    (wall time and peak memory of each whole process).
``lm``
    Tokens per second on ``env=dialogue_lm`` (the 2-layer transformer, REINFORCE with RLOO
    and a KL penalty): generating replies, the RL update, both, and SFT, for each
    ``--lm-batch`` replies per batch.
``pretrained``
    Tokens per second of a pretrained model on ``env=dialogue_text`` (SmolLM2-135M from the
    model cache, LoRA, REINFORCE with RLOO and the KL leash, 16 replies per batch):
    generating replies through its key-value cache, the RL update, both, and the peak
    resident memory, on one thread and on ``--threads``. Needs the ``[lm]`` extra and
    ``python -m pglab.models fetch smollm2-135m``.
``anchors``
    The fastest peer on a CPU next to pglab, alternating, ``--anchor-rounds`` rounds (the
    median of each case): a fully jitted JAX A2C on gymnax's MountainCar-v0, matched to
    pglab's tuned a2c (``jax_a2c.py`` of the shared anchors folder, ``--jax-anchor``), run
    by a Python that has jax and gymnax (``--jax-python``, ``$PGLAB_JAX_PYTHON`` or
    ``.venv-jax/bin/python``; skipped with one line when there is none: never a pglab
    dependency), next to pglab's a2c (its tuned setting, torch env) and sb3_a2c (its Zoo
    setting on the torch env), at each ``--anchor-envs`` and ``--anchor-threads``. The JAX
    figure is its steady state (the first call of a run, and its compile, apart).
``profile``
    Where the time of a compiled a2c update goes (``hardware.compile=true``, the tuned
    setting at each ``--profile-envs``): ms per update of the rollout and of the update,
    and, under ``torch.profiler``, of the matrix products, of inductor's fused kernels and
    of the rest.
``memory``
    Peak resident memory of one ordinary training run (``python run.py algo=a2c
    env=mountaincar``, W&B offline), the whole process tree summed (W&B's service
    process included), sampled every 20 ms from ``/proc``.

Output: progress lines, a markdown table (ratios against sb3_a2c's Zoo setup) and
``bench.json`` (``--out``) with every figure and the machine.

    python scripts/bench.py                                 # everything (~15 minutes here, 3 more with anchors)
    python scripts/bench.py --sections throughput --seconds 3
    python scripts/bench.py --sections solve --seeds 0 1 2 3 4
    python scripts/bench.py --sections lm --lm-batch 64 256 1024
    python scripts/bench.py --sections pretrained --threads 2
    python scripts/bench.py --device cuda --num-envs 1024 16384 65536 --sections throughput   # GPU mode
    python scripts/bench.py --device cuda   # every pglab and SB3 case on the GPU (the JAX anchor stays on the CPU)
    python scripts/bench.py --env-only --envs maze dialogue mountaincar --num-envs 1 64 1024  # envs alone
    python scripts/bench.py --sections anchors --jax-python .venv-jax/bin/python   # against the JAX A2C
    python scripts/bench.py --report bench.json               # the tables of a saved result
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
JAX_ANCHOR = ROOT.parent / "shared" / "anchors" / "jax_a2c.py"  # the speed anchors, beside the checkout
JAX_PYTHON_ENV = "PGLAB_JAX_PYTHON"
JAX_VENV_PYTHON = ROOT / ".venv-jax" / "bin" / "python"
JAX_INSTALL = "python3 -m venv .venv-jax && .venv-jax/bin/pip install jax jaxlib gymnax flax optax six"


# --------------------------------------------------------------------------- one case (child process)


SECTIONS = ("throughput", "solve", "lm", "pretrained", "anchors", "memory", "profile")


def load_config(algo: str, env_name: str, overrides: list[str]) -> Any:
    """The run config as ``run.py`` would compose it (tuned settings included), validated."""
    from hydra import compose, initialize_config_dir

    from pglab.config import validate

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return validate(compose("config", [f"algo={algo}", f"env={env_name}", "logger=none", *overrides]))


def _device(name: str) -> Any:
    import torch

    return torch.device(name)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput_case(case: dict[str, Any]) -> dict[str, Any]:
    """Env steps/s of ``case["algo"]`` training for ``case["seconds"]`` (after one warm-up update)."""
    import torch

    from pglab.envs import make_vec_env, resolve_env
    from pglab.experiment import build_agent
    from pglab.random_state import seed_everything

    cfg = load_config(case["algo"], case["env"], case["overrides"])
    device = _device(case["device"])
    torch.set_num_threads(case["threads"])
    seed_everything(case["seed"])
    env = make_vec_env(resolve_env(cfg.env), cfg.env.num_envs, seed=case["seed"], device=device)
    agent = build_agent(cfg, env, device)
    compiled = agent.compile(env) if cfg.hardware.compile else None  # what it compiled, in words
    t0 = time.perf_counter()
    agent.learn(env, 1, lambda u: True)  # warm-up: allocations, first calls, lazy inits (compilation)
    _sync(device)
    warmup_s = time.perf_counter() - t0
    start_steps = agent.env_steps
    seconds = case["seconds"]
    t0 = time.perf_counter()
    agent.learn(env, 2**62, lambda u: time.perf_counter() - t0 < seconds)
    _sync(device)
    elapsed = time.perf_counter() - t0
    env.close()
    done = agent.env_steps - start_steps
    return {"env_steps": done, "seconds": elapsed, "sps": done / elapsed, "warmup_s": warmup_s, "compiled": compiled}


def env_case(case: dict[str, Any]) -> dict[str, Any]:
    """Env steps/s of the vector env alone, uniformly random actions drawn on the device."""
    import gymnasium as gym
    import torch

    from pglab.envs import make_vec_env, resolve_env

    cfg = load_config("reinforce", case["env"], case["overrides"])
    device = _device(case["device"])
    torch.set_num_threads(case["threads"])
    n = cfg.env.num_envs
    env = make_vec_env(resolve_env(cfg.env), n, seed=case["seed"], device=device)
    space = env.single_action_space
    if isinstance(space, gym.spaces.Discrete):

        def sample() -> torch.Tensor:
            return torch.randint(0, int(space.n), (n,), device=device)
    else:
        low = torch.as_tensor(space.low, device=device)
        high = torch.as_tensor(space.high, device=device)

        def sample() -> torch.Tensor:
            return low + (high - low) * torch.rand((n, *space.shape), device=device)

    env.reset()
    for _ in range(10):  # warm-up
        env.step(sample())
    _sync(device)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < case["seconds"]:
        for _ in range(10):
            env.step(sample())
        steps += 10 * n
        _sync(device)
    elapsed = time.perf_counter() - t0
    env.close()
    return {"env_steps": steps, "seconds": elapsed, "sps": steps / elapsed}


def solve_case(case: dict[str, Any]) -> dict[str, Any]:
    """Train until the 100-episode evaluation reaches the threshold (or the budget ends)."""
    import torch

    from pglab.experiment import run

    cfg = load_config(case["algo"], case["env"], case["overrides"])
    torch.set_num_threads(case["threads"])
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, Path(tmp) / "run")
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return {
        "solved_at_train_s": summary["solved_at_train_s"],
        "solved_at_env_steps": summary["solved_at_env_steps"],
        "train_s": summary["train_s"],
        "env_steps": summary["env_steps"],
        "sps": summary["sps"],
        "final_return": summary["final"]["return_mean"],
    }


def timed_episodes(
    agent: Any, env: Any, buf: Any, device: Any, seconds: float, min_updates: int = 0
) -> tuple[float, float, int, int]:
    """Whole-episode updates (collect, then update) for ``seconds`` of both, at least
    ``min_updates``: ``(collect s, update s, reply tokens, updates)``."""
    gen_s = upd_s = 0.0
    tokens = updates = 0
    while gen_s + upd_s < seconds or updates < min_updates:
        t1 = time.perf_counter()
        T = agent.collect(env, buf)
        _sync(device)
        t2 = time.perf_counter()
        agent.update(buf, T)
        _sync(device)
        gen_s += t2 - t1
        upd_s += time.perf_counter() - t2
        tokens += int(buf["valid"][:T].sum())
        updates += 1
    return gen_s, upd_s, tokens, updates


def lm_case(case: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s of dialogue_lm: SFT, reply generation, the RL update, and both together.

    REINFORCE with its tuned dialogue_lm setting (RLOO, k = 4, a KL penalty to a reference
    copy of the policy) on ``env.num_envs`` replies per batch. ``generation`` times the
    sampling of whole replies through the env (one transformer forward over the context
    and one env step per token); ``update`` times the loss (one causal pass over every
    reply, the reference's pass, backward, Adam); ``sft`` times supervised steps on the
    expert's replies; tokens are the reply tokens (env steps) each covers.
    """
    import torch

    from pglab.algos.sft import supervised_finetune
    from pglab.envs import make_vec_env, resolve_env
    from pglab.experiment import build_agent
    from pglab.random_state import seed_everything

    cfg = load_config(case["algo"], "dialogue_lm", case["overrides"])
    device = _device(case["device"])
    torch.set_num_threads(case["threads"])
    seed_everything(case["seed"])
    env = make_vec_env(resolve_env(cfg.env), cfg.env.num_envs, seed=case["seed"], device=device)
    agent = build_agent(cfg, env, device)
    t0 = time.perf_counter()
    sft_steps = 0
    while time.perf_counter() - t0 < case["seconds"] / 2:
        supervised_finetune(agent.policy, env.unwrapped.demonstrations, cfg.sft, 10, lambda m: None)
        sft_steps += 10
    sft_s = time.perf_counter() - t0
    per_call = sum(int(env.unwrapped.demonstrations(cfg.sft.batch_size, i)["valid"].sum()) for i in range(10))
    demo_tokens = per_call * sft_steps // 10  # each call above trained on batches 0..9
    agent.set_reference()
    env.unwrapped.set_group_size(cfg.algo.group_size or 1)
    buf = agent.buffers(env)
    agent.update(buf, agent.collect(env, buf))  # warm-up
    gen_s, upd_s, tokens, _ = timed_episodes(agent, env, buf, device, case["seconds"])
    env.close()
    return {
        "tokens": tokens,
        "generation_tps": tokens / gen_s,
        "update_tps": tokens / upd_s,
        "rl_tps": tokens / (gen_s + upd_s),
        "sft_tps": demo_tokens / sft_s,
        "sps": tokens / (gen_s + upd_s),
    }


def pretrained_case(case: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s of a pretrained model (SmolLM2-135M) on dialogue_text, and the peak memory.

    REINFORCE with its tuned dialogue_text setting (RLOO, k = 4, LoRA, the KL leash to the
    base model with its adapters off) on ``env.num_envs`` replies per batch, after one
    warm-up update. ``generation`` times the sampling of whole replies through the model's
    key-value cache; ``update`` the loss (one causal pass over every reply with the
    adapters, one without, backward into the adapters, Adam). Tokens are reply tokens.
    Peak memory is the child process's resident maximum.
    """
    import resource

    import torch

    from pglab.envs import make_vec_env, resolve_env
    from pglab.envs.make import share_starts
    from pglab.experiment import build_agent
    from pglab.random_state import seed_everything

    cfg = load_config(case["algo"], "dialogue_text", case["overrides"])
    device = _device(case["device"])
    torch.set_num_threads(case["threads"])
    seed_everything(case["seed"])
    spec = resolve_env(cfg.env)
    env = make_vec_env(spec, cfg.env.num_envs, seed=case["seed"], device=device)
    agent = build_agent(cfg, env, device, spec)
    share_starts(spec, env, cfg.algo.group_size)
    agent.set_reference()
    buf = agent.buffers(env)
    agent.update(buf, agent.collect(env, buf))  # warm-up
    gen_s, upd_s, tokens, updates = timed_episodes(agent, env, buf, device, case["seconds"], min_updates=2)
    env.close()
    return {
        "tokens": tokens,
        "updates": updates,
        "generation_tps": tokens / gen_s,
        "update_tps": tokens / upd_s,
        "rl_tps": tokens / (gen_s + upd_s),
        "s_per_update": (gen_s + upd_s) / updates,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sps": tokens / (gen_s + upd_s),
    }


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profile_case(case: dict[str, Any]) -> dict[str, Any]:
    """Where a compiled a2c update's time goes at ``case["num_envs"]`` envs (ms per update).

    Wall time of the rollout and of the update, ``case["updates"]`` of each timed apart
    after a warm-up; then, under ``torch.profiler`` (which adds its own cost per
    operation), the self time of the matrix products, of inductor's fused kernels, and of
    everything else (the programs' Python wrappers, the autograd engine, eager operations).
    """
    import torch
    import torch._inductor.config as inductor_config
    from torch.profiler import profile

    from pglab.envs import make_vec_env, resolve_env
    from pglab.experiment import build_agent
    from pglab.random_state import seed_everything

    inductor_config.cpp.enable_kernel_profile = True  # each fused kernel a profiler event of its own
    cfg = load_config("a2c", "mountaincar", case["overrides"])
    device = _device(case["device"])
    torch.set_num_threads(case["threads"])
    seed_everything(case["seed"])
    env = make_vec_env(resolve_env(cfg.env), cfg.env.num_envs, seed=case["seed"], device=device)
    agent = build_agent(cfg, env, device)
    what = agent.compile(env)
    steps = agent.compiled
    if steps is None:
        raise RuntimeError(f"hardware.compile compiled {what}")
    buf = agent.buffers(env)
    obs, _ = env.reset()
    agent.update_obs_stats(obs)
    for _ in range(10):  # compiles every program, warms up
        obs = steps.collect(env, obs, buf)
        steps.update(buf)
    k, wall = case["updates"], {}
    for name, part in (("rollout", lambda: steps.collect(env, obs, buf)), ("update", lambda: steps.update(buf))):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(k):
            part()
        _sync(device)
        wall[f"{name}_ms"] = (time.perf_counter() - t0) / k * 1e3
    with profile() as prof:
        for _ in range(k):
            obs = steps.collect(env, obs, buf)
            steps.update(buf)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    matmul = sum(v for key, v in self_us.items() if key in MATMULS)
    kernels = sum(v for key, v in self_us.items() if key.startswith("graph_"))
    per_update = {"matmul": matmul, "kernels": kernels, "rest": sum(self_us.values()) - matmul - kernels}
    profiled = {f"profiled_{key}_ms": v / k / 1e3 for key, v in per_update.items()}
    return wall | profiled | {"n_steps": cfg.algo.n_steps}


CASES = {
    "throughput": throughput_case,
    "env": env_case,
    "solve": solve_case,
    "lm": lm_case,
    "pretrained": pretrained_case,
    "profile": profile_case,
}


def child_main(spec: str) -> int:
    """Run one case (a JSON spec) and print its result as the last line of stdout."""
    case = json.loads(spec)
    result = CASES[case["kind"]](case)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- orchestration (parent)


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed child said last (its stderr, else its stdout): the case's error."""
    return ((proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"])[-1]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in a child process (the same process group); its result merged into ``case``."""
    env = os.environ | {"OMP_NUM_THREADS": str(case["threads"]), "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(case)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    process_s = time.perf_counter() - t0  # the whole child: interpreter, imports, setup, the case
    if proc.returncode != 0:
        return case | {"error": last_line(proc)}
    return case | json.loads(proc.stdout.strip().splitlines()[-1]) | {"process_s": process_s}


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in kB, from ``/proc``."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue  # the process ended meanwhile
    return total


def watch(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``cmd`` (from the repository root, stdout dropped): how it ended (its stderr kept),
    its wall seconds and the peak resident memory of its process tree in MB (sampled every 20 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.02)
    _, err = proc.communicate()
    ended = subprocess.CompletedProcess(cmd, proc.returncode, "", err)
    return ended, time.perf_counter() - t0, peak / 1024


def seed_stack_runs(args: argparse.Namespace) -> dict[str, Any]:
    """The seed table as one process (``hydra/launcher=vectorized``: the seeds as one stack,
    each stopping at −110) next to one seed alone, the same way (wall time and peak memory
    of each whole process, startup included)."""
    if args.device != "cpu":  # the launcher would run the seeds one at a time: not the row's case
        return {"stack": {"skipped": f"seed stacks run on the CPU, not on --device {args.device}"}}
    out: dict[str, Any] = {}
    seeds = ",".join(map(str, args.seeds))
    launches = {"stack": ["-m", "hydra/launcher=vectorized", f"seed={seeds}"], "alone": ["-m", f"seed={args.seeds[0]}"]}
    for name, launch in launches.items():
        with tempfile.TemporaryDirectory() as tmp:
            overrides = ["algo=a2c", "env=mountaincar", "env.backend=torch", *solve_overrides(args), "logger=none"]
            overrides.append(f"hardware.num_threads={args.threads}")
            cmd = [sys.executable, str(ROOT / "run.py"), *launch, *overrides, f"hydra.sweep.dir={tmp}/sweep"]
            proc, wall, peak_mb = watch(cmd, dict(os.environ))
            summaries = [json.loads(f.read_text()) for f in sorted(Path(tmp).glob("sweep/*/summary.json"))]
        row: dict[str, Any] = {"command": " ".join(["python run.py", *cmd[2:-1]]), "process_s": wall}
        row |= {"peak_tree_rss_mb": peak_mb, "returncode": proc.returncode, "seeds": [s["seed"] for s in summaries]}
        row["solved_at_env_steps"] = [s.get("solved_at_env_steps") for s in summaries]
        row["final_return"] = [(s.get("final") or {}).get("return_mean") for s in summaries]
        if proc.returncode != 0:
            row["error"] = last_line(proc)
        out[name] = row
    return out


def memory_run(steps: int, threads: int) -> dict[str, Any]:
    """Peak RSS of ``python run.py algo=a2c env=mountaincar`` with W&B offline (process tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            str(ROOT / "run.py"),
            "algo=a2c",
            "env=mountaincar",
            "logger.mode=offline",
            f"total_steps={steps}",
            f"hardware.num_threads={threads}",
            f"hydra.run.dir={tmp}/run",
        ]
        env = os.environ | {"WANDB_DIR": tmp, "WANDB_SILENT": "true"}
        env.pop("WANDB_MODE", None)
        proc, wall, peak_mb = watch(cmd, env)
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text()) if proc.returncode == 0 else {}
    result: dict[str, Any] = {
        "command": " ".join(["python run.py", *cmd[2:-1]]),
        "peak_tree_rss_mb": peak_mb,
        "wall_s": wall,
        "wandb_mode": summary.get("wandb_mode"),
        "returncode": proc.returncode,
    }
    if proc.returncode != 0:
        result["error"] = last_line(proc)
    return result


def find_jax_python(given: str | None) -> tuple[str | None, str]:
    """The Python that runs the JAX anchor, or None and the reason (one line) there is none:
    ``given``, else ``$PGLAB_JAX_PYTHON``, else ``.venv-jax/bin/python``, if it imports jax and gymnax."""
    if given and shutil.which(given) is None:
        return None, f"--jax-python {given}: no such executable; to make one: {JAX_INSTALL}"
    candidates = [c for c in (given, os.environ.get(JAX_PYTHON_ENV), str(JAX_VENV_PYTHON)) if c]
    for python in filter(shutil.which, candidates):
        try:
            probe = subprocess.run([python, "-c", "import jax, gymnax, flax, optax"], capture_output=True, check=False)
        except OSError as err:
            return None, f"{python} cannot be run ({err.strerror}); to make a JAX Python: {JAX_INSTALL}"
        if probe.returncode == 0:
            return python, ""
        return None, f"{python} cannot import jax, gymnax, flax and optax; install them into it: {JAX_INSTALL}"
    return None, f"no Python with jax and gymnax (--jax-python, ${JAX_PYTHON_ENV}); to make one: {JAX_INSTALL}"


def jax_anchor_case(python: str, anchor: Path, n: int, threads: int, steps: int) -> dict[str, Any]:
    """The JAX A2C's steady-state env steps/s at ``n`` envs (three calls of the compiled run,
    the first apart) and its compile seconds; ``error`` when it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "jax.json"
        cmd = [python, str(anchor), "--threads", str(threads), "--num-envs", str(n), "--total-steps", str(steps)]
        cmd += ["--repeats", "3", "--eval-episodes", "0", "--out", str(out)]
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0 or not out.exists():
            return {"error": last_line(proc)}
        result = json.loads(out.read_text())
    versions, flags = result["versions"], result["xla_flags"]
    return {"sps": result["sps"], "compile_s": result["compile_s"], "versions": versions, "xla_flags": flags}


def jax_seeds_case(python: str, anchor: Path, seeds: list[int], threads: int, steps: int) -> dict[str, Any]:
    """The JAX A2C vmapped over ``seeds`` (``scripts/jax_seeds.py``): one process trains
    every seed at once for ``steps`` env steps each; ``process_s`` is that whole process."""
    cmd = [python, str(ROOT / "scripts" / "jax_seeds.py"), "--anchor", str(anchor), "--threads", str(threads)]
    cmd += ["--total-steps", str(steps), "--seeds", *map(str, seeds)]
    t0 = time.perf_counter()
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": last_line(proc)}
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"process_s": process_s}


def anchor_rows(
    args: argparse.Namespace, python: str, progress: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """pglab a2c, sb3_a2c and the JAX A2C at each (threads, envs), alternating, each the
    median of ``--anchor-rounds`` measurements; ``progress`` gets each row when it is done."""
    rows = []
    for threads in args.anchor_threads:
        for n in args.anchor_envs:
            base = {"kind": "throughput", "env": "mountaincar", "seed": args.seed, "threads": threads}
            base |= {"seconds": args.seconds, "device": args.device, "num_envs": n}
            ours = ["env.backend=torch", f"env.num_envs={n}", f"hardware.device={args.device}", *args.set]
            compiled = [*ours, "hardware.compile=true"]
            cases = {
                "a2c": base | {"algo": "a2c", "label": f"a2c ({n} envs)", "overrides": ours},
                "a2c_compiled": base | {"algo": "a2c", "label": f"a2c compiled ({n} envs)", "overrides": compiled},
                "sb3_a2c": base | {"algo": "sb3_a2c", "label": f"sb3_a2c ({n} envs)", "overrides": ours},
            }
            measured: dict[str, list[float]] = {name: [] for name in [*cases, "jax", "jax_compile"]}
            measured["a2c_compiled_warmup"] = []
            row: dict[str, Any] = {"label": f"{n} envs, {threads} thread(s)", "num_envs": n, "threads": threads}
            for _ in range(args.anchor_rounds):
                for name, case in cases.items():
                    got = run_case(case)
                    if "error" in got:
                        row[f"{name}_error"] = got["error"]
                    else:
                        measured[name].append(got["sps"])
                        if name == "a2c_compiled":  # its first update, which compiles its programs
                            measured["a2c_compiled_warmup"].append(got["warmup_s"])
                jax = jax_anchor_case(python, args.jax_anchor, n, threads, args.anchor_steps)
                if "error" in jax:
                    row["jax_error"] = jax["error"]
                else:
                    measured["jax"].append(jax["sps"])
                    measured["jax_compile"].append(jax["compile_s"])
                    row |= {"jax_versions": jax["versions"], "jax_xla_flags": jax["xla_flags"]}
            times = ("jax_compile", "a2c_compiled_warmup")
            row |= {f"{k}_sps": statistics.median(v) for k, v in measured.items() if v and k not in times}
            row |= {f"{k}_s": statistics.median(measured[k]) for k in times if measured[k]}
            row |= {f"{k}_runs": v for k, v in measured.items()}
            rows.append(row)
            progress(row)
    return rows


def throughput_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = {"kind": "throughput", "env": "mountaincar", "seed": args.seed, "threads": args.threads}
    base |= {"seconds": args.seconds, "device": args.device}
    cases = []
    zoo = ["env.backend=gymnasium"]
    if args.device == "cpu":
        cases.append(base | {"algo": "sb3_a2c", "label": "sb3_a2c (Zoo: 16 envs, gymnasium)", "overrides": zoo})
        cases.append(base | {"algo": "sb3_ppo", "label": "sb3_ppo (Zoo: 16 envs, gymnasium)", "overrides": zoo})
        cases.append(
            base | {"algo": "sb3_a2c", "label": "sb3_a2c (16 envs, torch env)", "overrides": ["env.backend=torch"]}
        )
        if not args.no_variants:  # does SB3 gain from the machine's other core?
            label = f"sb3_a2c (Zoo: 16 envs, gymnasium, {2 * args.threads} threads)"
            cases.append(base | {"algo": "sb3_a2c", "label": label, "overrides": zoo, "threads": 2 * args.threads})
    backends = ["gymnasium", "torch"] if args.device == "cpu" else ["torch"]
    for algo in args.algos:  # the tuned setting as it is (its own number of envs)
        n = load_config(algo, "mountaincar", []).env.num_envs
        label = f"{algo} (tuned: {n} envs, torch)"
        overrides = ["env.backend=torch", f"hardware.device={args.device}", *args.set]
        cases.append(base | {"algo": algo, "label": label, "overrides": overrides})
    for algo in args.algos:
        for backend in backends:
            for n in args.num_envs:
                overrides = [f"env.backend={backend}", f"env.num_envs={n}", f"hardware.device={args.device}"]
                label = f"{algo} ({n} envs, {backend})"
                cases.append(base | {"algo": algo, "label": label, "overrides": overrides + args.set})
    if "a2c" in args.algos and not args.no_variants:  # the same a2c case compiled, and on two threads
        n = max(args.num_envs)
        overrides = ["env.backend=torch", f"env.num_envs={n}", f"hardware.device={args.device}", *args.set]
        label = f"a2c ({n} envs, torch, hardware.compile)"
        cases.append(base | {"algo": "a2c", "label": label, "overrides": [*overrides, "hardware.compile=true"]})
        label = f"a2c ({n} envs, torch, {2 * args.threads} threads)"
        cases.append(base | {"algo": "a2c", "label": label, "overrides": overrides, "threads": 2 * args.threads})
    return cases


def solve_overrides(args: argparse.Namespace) -> list[str]:
    """What every solve run adds: 100-episode evaluations every ``--solve-eval-every`` steps,
    stopping at the first that reaches the threshold, and no checkpoints."""
    return [
        f"hardware.device={args.device}",
        "eval.episodes=100",
        "eval.num_envs=100",
        "eval.stop_when_solved=true",
        f"eval.every_steps={args.solve_eval_every}",
        "checkpoint_every_steps=100000000",
    ]


def solve_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    common = solve_overrides(args)
    cases = []
    for seed in args.seeds:
        base = {"kind": "solve", "env": "mountaincar", "seed": seed, "threads": args.threads, "device": args.device}
        ours = ["env.backend=torch", f"seed={seed}", *common]
        cases.append(base | {"algo": "a2c", "label": f"a2c (tuned, torch), seed {seed}", "overrides": ours})
        compiled = [*ours, "hardware.compile=true"]
        label = f"a2c compiled (tuned, torch), seed {seed}"
        cases.append(base | {"algo": "a2c", "name": "a2c_compiled", "label": label, "overrides": compiled})
        zoo = ["env.backend=gymnasium", f"seed={seed}", f"total_steps={args.sb3_budget}", *common]
        cases.append(base | {"algo": "sb3_a2c", "label": f"sb3_a2c (Zoo), seed {seed}", "overrides": zoo})
    return cases


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "—" if x is None else format(x, spec)


def report(result: dict[str, Any]) -> str:
    """The markdown tables of a benchmark result."""
    lines: list[str] = []
    rows = result.get("throughput", [])
    ref = next((r["sps"] for r in rows if r.get("label", "").startswith("sb3_a2c (Zoo") and "sps" in r), None)
    ppo = next((r["sps"] for r in rows if r.get("label", "").startswith("sb3_ppo (Zoo") and "sps" in r), None)
    if rows:
        lines += ["| case | env steps/s | × sb3_a2c (Zoo) | × sb3_ppo (Zoo) | peak RSS (MB) |", "|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['label']} | failed: {r['error']} | | | |")
                continue
            ratios = " | ".join(f"{r['sps'] / x:.1f}×" if x else "—" for x in (ref, ppo))
            lines.append(f"| {r['label']} | {r['sps']:,.0f} | {ratios} | {r['peak_rss_mb']:.0f} |")
    solves = result.get("solve", [])
    if solves:
        head = "| seed | a2c (tuned, torch env): s to −110 (env steps) | sb3_a2c Zoo: s to −110 (env steps) |"
        lines += ["", head + " a2c / sb3_a2c |"]
        lines += ["|---|---|---|---|"]
        for seed in sorted({r["seed"] for r in solves}):
            a = next((r for r in solves if r["seed"] == seed and solver(r) == "a2c"), {})
            b = next((r for r in solves if r["seed"] == seed and solver(r) == "sb3_a2c"), {})
            ta, tb = a.get("solved_at_train_s"), b.get("solved_at_train_s")
            ratio = f"{ta / tb:.2f}" if ta and tb else ("sb3_a2c unsolved" if ta else "a2c unsolved")
            cell_a = f"{_fmt(ta, '.1f')} ({_fmt(a.get('solved_at_env_steps'))})"
            budget = f"not in {_fmt(b.get('env_steps'))}" if tb is None else _fmt(b.get("solved_at_env_steps"))
            cell_b = f"{_fmt(tb, '.1f')} ({budget})"
            lines.append(f"| {seed} | {cell_a} | {cell_b} | {ratio} |")
    lines += seed_table_report(solves, result.get("solve_jax"), result.get("seed_stack"))
    lm = result.get("lm", [])
    if lm:
        lines += [
            "",
            "| dialogue_lm (reinforce, RLOO k=4, KL to the reference) | generation | RL update | RL (both) | SFT |",
        ]
        lines += ["|---|---|---|---|---|"]
        for r in lm:
            if "error" in r:
                lines.append(f"| {r['label']} | failed: {r['error']} | | | |")
                continue
            cells = " | ".join(f"{r[k]:,.0f}" for k in ("generation_tps", "update_tps", "rl_tps", "sft_tps"))
            lines.append(f"| {r['label']} (tokens/s) | {cells} |")
    lines += anchor_report(result.get("anchors"))
    lines += profile_report(result.get("profile", []))
    mem = result.get("memory")
    if mem:
        lines += ["", f"Peak RSS of `{mem['command']}` (process tree, W&B {mem.get('wandb_mode')}): "]
        lines[-1] += f"{mem['peak_tree_rss_mb']:.0f} MB" + (f" — failed: {mem['error']}" if "error" in mem else "")
    return "\n".join(lines)


SOLVERS = {"a2c": "pglab a2c", "a2c_compiled": "pglab a2c, hardware.compile=true", "sb3_a2c": "sb3_a2c (Zoo)"}


def solver(row: dict[str, Any]) -> str:
    """Which of :data:`SOLVERS` a solve row is (its case's ``name``, else its algorithm)."""
    return row.get("name", row["algo"])


def seed_table_report(
    solves: list[dict[str, Any]], jax: dict[str, Any] | None, stack: dict[str, Any] | None = None
) -> list[str]:
    """The whole seed table's wall time: the solve section's runs (one process per seed, one
    after another) next to the JAX A2C vmapped over the same seeds."""
    if not solves:
        return []
    seeds = sorted({r["seed"] for r in solves})
    lines = ["", f"| A2C on MountainCar-v0, seeds {', '.join(map(str, seeds))} | wall s, all seeds | seeds at −110 |"]
    lines += ["|---|---|---|"]
    for name, what in SOLVERS.items():
        rows = [r for r in solves if solver(r) == name and "process_s" in r]
        if rows:
            solved = sum(r.get("solved_at_env_steps") is not None for r in rows)
            label = f"{what}: one process per seed, one after another, stopping at −110"
            lines.append(f"| {label} | {sum(r['process_s'] for r in rows):.0f} | {solved}/{len(rows)} |")
    for name, what in (("stack", "pglab a2c, hydra/launcher=vectorized: the seeds as one stack, one process"),
                       ("alone", "pglab a2c, one seed alone, the same way")):  # fmt: skip
        row = (stack or {}).get(name)
        if row and "skipped" in row:
            lines.append(f"| {what} | skipped: {row['skipped']} | |")
        elif row and "error" not in row:
            solved = sum(x is not None for x in row["solved_at_env_steps"])
            mem = f"{row['peak_tree_rss_mb']:.0f} MB peak"
            lines.append(f"| {what} | {row['process_s']:.0f} ({mem}) | {solved}/{len(row['seeds'])} |")
        elif row:
            lines.append(f"| {what} | failed: {row['error']} | |")
    if jax and "error" not in jax:
        from pglab.docgen.bench_blocks import SOLVED_MOUNTAINCAR  # here: the children never load docgen

        at = sum(x >= SOLVED_MOUNTAINCAR for x in jax["eval_returns"])
        label = f"jitted JAX A2C vmapped over the seeds: one process, {jax['env_steps_per_seed']:,} steps each"
        wall = f"{jax['process_s']:.0f} (compile {jax['compile_s']:.0f})"
        lines.append(f"| {label} | {wall} | {at}/{len(seeds)} at the end |")
    elif jax:
        lines.append(f"| jitted JAX A2C vmapped over the seeds | failed: {jax['error']} | |")
    return lines


def profile_report(rows: list[dict[str, Any]]) -> list[str]:
    """The profile section's table: ms per compiled a2c update, and where they go."""
    if not rows:
        return []
    lines = ["", "| profile, ms per update | rollout | update | under the profiler: matmuls | fused kernels | rest |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | failed: {r['error']} | | | | |")
            continue
        keys = ("rollout_ms", "update_ms", "profiled_matmul_ms", "profiled_kernels_ms", "profiled_rest_ms")
        lines.append(f"| {r['label']} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |")
    return lines


def anchor_report(anchors: dict[str, Any] | None) -> list[str]:
    """The anchors table (pglab a2c against the JAX A2C), or the line saying why it was skipped."""
    if not anchors:
        return []
    if "skipped" in anchors:
        return ["", f"Anchors skipped: {anchors['skipped']}"]
    head = ["MountainCar-v0 A2C", "pglab a2c", "compiled", "jitted JAX a2c", "pglab / JAX", "compiled / JAX"]
    head += ["sb3_a2c", "pglab / sb3_a2c"]
    lines = ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in anchors["rows"]:
        ours, comp, jax, sb3 = (r.get(f"{k}_sps") for k in ("a2c", "a2c_compiled", "jax", "sb3_a2c"))
        vs_jax = f"{ours / jax:.2f}" if ours and jax else r.get("jax_error", "—")
        comp_jax = f"{comp / jax:.2f}" if comp and jax else r.get("a2c_compiled_error", "—")
        vs_sb3 = f"{ours / sb3:.1f}×" if ours and sb3 else r.get("sb3_a2c_error", "—")
        cells = [r["label"], _fmt(ours), _fmt(comp), _fmt(jax), vs_jax, comp_jax, _fmt(sb3), vs_sb3]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def machine(device: str) -> dict[str, Any]:
    """What the benchmark ran on (the docs' provenance lines name it)."""
    import torch

    from pglab.machine import machine_info

    out: dict[str, Any] = machine_info() | {"cores": os.cpu_count(), "device": device}
    if device == "cuda" and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS))
    parser.add_argument(
        "--lm-batch", nargs="+", type=int, default=[64, 256], help="replies per batch of the lm section"
    )
    parser.add_argument(
        "--algos", nargs="+", default=["reinforce", "a2c", "ppo"], help="pglab's algorithms (throughput)"
    )
    parser.add_argument("--num-envs", nargs="+", type=int, default=[16, 256, 1024])
    parser.add_argument("--seconds", type=float, default=4.0, help="timed training per throughput case")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="seeds of the solve race")
    parser.add_argument("--solve-eval-every", type=int, default=10_000, help="env steps between evaluations")
    parser.add_argument("--sb3-budget", type=int, default=1_000_000, help="sb3_a2c's step budget (the Zoo's)")
    parser.add_argument("--memory-steps", type=int, default=300_000)
    parser.add_argument("--anchor-envs", nargs="+", type=int, default=[16, 128, 1024, 4096])
    parser.add_argument("--anchor-threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--anchor-rounds", type=int, default=1, help="alternating measurements per anchor case")
    parser.add_argument("--anchor-steps", type=int, default=1_000_000, help="env steps per timed JAX call")
    parser.add_argument("--profile-envs", nargs="+", type=int, default=[128, 1024], help="envs of the profile")
    parser.add_argument("--profile-updates", type=int, default=200, help="updates timed per part of the profile")
    parser.add_argument("--jax-anchor", type=Path, default=JAX_ANCHOR, help="the JAX A2C script")
    parser.add_argument("--jax-steps", type=int, default=3_000_000, help="env steps per seed of the vmapped JAX A2C")
    parser.add_argument("--jax-python", help=f"a Python with jax and gymnax (default ${JAX_PYTHON_ENV}, .venv-jax)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per case")
    parser.add_argument(
        "--no-variants", action="store_true", help="skip the compiled and two-thread cases (throughput)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-only", action="store_true", help="time the envs alone (random actions)")
    parser.add_argument("--envs", nargs="+", default=["mountaincar"], help="envs of --env-only")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides of every case")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--report", type=Path, metavar="BENCH_JSON", help="print the tables of a saved result")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    positive = [*args.num_envs, *args.anchor_envs, *args.anchor_threads, args.threads, args.anchor_rounds]
    positive += [*args.profile_envs, args.profile_updates]
    if args.seconds <= 0 or args.anchor_steps < 1 or any(n < 1 for n in positive):
        parser.error("--seconds, --num-envs, --threads, the --anchor-* and --profile-* values must be positive")
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available here")

    result: dict[str, Any] = {"machine": machine(args.device), "threads": args.threads}
    found: list[tuple[str | None, str]] = []

    def jax_python() -> tuple[str | None, str]:
        """The JAX Python and the JAX anchor, looked for once (the probe imports jax: seconds)."""
        if not found:
            missing = None if args.jax_anchor.exists() else f"{args.jax_anchor}: no such file (--jax-anchor)"
            found.append((None, missing) if missing else find_jax_python(args.jax_python))
        return found[0]

    t_start = time.perf_counter()

    def show(row: dict[str, Any], text: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f} s] {row['label']:<44} {text}", flush=True)

    if args.env_only:
        rows = []
        for name in args.envs:
            for n in args.num_envs:
                case = {"kind": "env", "env": name, "seed": args.seed, "threads": args.threads}
                case |= {"seconds": args.seconds, "device": args.device, "label": f"{name} ({n} envs)"}
                case["overrides"] = [f"env.num_envs={n}", f"hardware.device={args.device}", *args.set]
                row = run_case(case)
                rows.append(row)
                show(row, row.get("error") or f"{row['sps']:>12,.0f} env steps/s")
        result["env_only"] = rows
        print("\n| env | env steps/s |\n|---|---|")
        for r in rows:
            print(f"| {r['label']} | {_fmt(r.get('sps'))} |")
    if not args.env_only and "throughput" in args.sections:
        result["throughput"] = []
        for case in throughput_cases(args):
            row = run_case(case)
            result["throughput"].append(row)
            show(row, row.get("error") or f"{row['sps']:>12,.0f} env steps/s  {row['peak_rss_mb']:.0f} MB")
    if not args.env_only and "solve" in args.sections:
        result["solve"] = []
        for case in solve_cases(args):
            row = run_case(case)
            result["solve"].append(row)
            solved = row.get("solved_at_train_s")
            text = row.get("error") or (
                f"solved in {solved:.1f} s ({row['solved_at_env_steps']:,} steps)"
                if solved is not None
                else f"not solved in {row['env_steps']:,} steps ({row['train_s']:.0f} s)"
            )
            show(row, text)
        result["seed_stack"] = seed_stack_runs(args)
        for name, row in result["seed_stack"].items():
            text = row.get("skipped") or row.get("error") or f"{row['process_s']:.1f} s"
            show({"label": f"a2c seed table, {name}"}, text)
        python, why = jax_python()
        if python is not None:
            result["solve_jax"] = jax_seeds_case(python, args.jax_anchor, args.seeds, args.threads, args.jax_steps)
            show({"label": "jitted JAX A2C, seeds vmapped"}, result["solve_jax"].get("error") or "done")
        else:
            print(f"solve: the vmapped JAX A2C skipped: {why}", flush=True)
    if not args.env_only and "profile" in args.sections:
        result["profile"] = []
        for n in args.profile_envs:
            overrides = ["env.backend=torch", f"env.num_envs={n}", f"hardware.device={args.device}", *args.set]
            case = {"kind": "profile", "env": "mountaincar", "seed": args.seed, "threads": args.threads}
            case |= {"device": args.device, "num_envs": n, "updates": args.profile_updates, "overrides": overrides}
            row = run_case(case | {"label": f"a2c compiled ({n} envs): where an update's time goes"})
            result["profile"].append(row)
            show(row, row.get("error") or f"{row['rollout_ms'] + row['update_ms']:.2f} ms per update")
    if not args.env_only and "lm" in args.sections:
        result["lm"] = []
        for n in args.lm_batch:
            case = {"kind": "lm", "algo": "reinforce", "seed": args.seed, "threads": args.threads}
            case |= {"seconds": args.seconds * 2, "device": args.device, "label": f"dialogue_lm, {n} replies/batch"}
            case["overrides"] = [f"env.num_envs={n}", f"hardware.device={args.device}", *args.set]
            row = run_case(case)
            result["lm"].append(row)
            show(row, row.get("error") or f"{row['rl_tps']:>12,.0f} tokens/s (RL)")
    if not args.env_only and "pretrained" in args.sections:
        result["pretrained"] = []
        for threads in sorted({1, args.threads}):
            case = {"kind": "pretrained", "algo": "reinforce", "seed": args.seed, "threads": threads}
            case |= {"seconds": args.seconds * 10, "device": args.device}
            case |= {"label": f"SmolLM2-135M on dialogue_text, 16 replies/batch, {threads} thread(s)"}
            case["overrides"] = ["policy=smollm2_135m", f"hardware.device={args.device}", *args.set]
            row = run_case(case)
            result["pretrained"].append(row)
            show(row, row.get("error") or f"{row['rl_tps']:>12,.0f} tokens/s (RL), {row['peak_rss_mb']:,.0f} MB peak")
    if not args.env_only and "anchors" in args.sections:
        python, why = jax_python()
        if python is None:
            result["anchors"] = {"skipped": why}
            print(f"anchors: skipped: {why}", flush=True)
        else:
            rows = anchor_rows(
                args, python, lambda r: show(r, f"pglab {_fmt(r.get('a2c_sps'))}  JAX {_fmt(r.get('jax_sps'))}")
            )
            result["anchors"] = {"python": python, "anchor": str(args.jax_anchor), "rows": rows}
    if not args.env_only and "memory" in args.sections:
        result["memory"] = memory_run(args.memory_steps, args.threads)
        show({"label": "memory: run.py a2c mountaincar"}, f"{result['memory']['peak_tree_rss_mb']:.0f} MB")
    result["total_s"] = time.perf_counter() - t_start
    print()
    print(report(result))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out} ({result['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
