"""Generated blocks from ``scripts/bench.py`` results (``docs/results/bench_*/bench*.json``):
training throughput next to SB3, time to solve, memory, language-model tokens/s, the
batched environments alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pglab.docgen.blocks import RESULTS, footer
from pglab.report.fmt import fmt, markdown_head, markdown_row

ZOO_REFERENCE = "sb3_a2c (Zoo"  # the rows the throughput ratios divide by
ZOO_PPO = "sb3_ppo (Zoo"


def bench(root: Path, name: str, file: str = "bench.json") -> dict[str, Any]:
    """A committed ``scripts/bench.py`` result (``docs/results/<name>/<file>``)."""
    return json.loads((root / RESULTS / name / file).read_text())


def reference_sps(rows: list[dict[str, Any]], label: str = ZOO_REFERENCE) -> float:
    """The SB3 Zoo setup (sb3_a2c's unless ``label`` names another) on one thread: what the
    throughput ratios divide by.

    Raises:
        ValueError: the result has no such row (a benchmark run without the SB3 cases).
    """
    for r in rows:
        if r["label"].startswith(label) and r.get("threads") == 1 and "sps" in r:
            return float(r["sps"])
    raise ValueError(f"no '{label}...' row on one thread to divide by")


def bench_throughput(root: Path) -> str:
    """Env steps/s of training per case, × sb3_a2c's and × sb3_ppo's Zoo setups, peak memory."""
    rows = bench(root, "bench_throughput")["throughput"]
    refs = [reference_sps(rows), reference_sps(rows, ZOO_PPO)]
    lines = markdown_head(["case", "env steps/s", "× sb3_a2c (Zoo)", "× sb3_ppo (Zoo)", "peak RSS (MB)"])
    for r in rows:
        ratios = [f"{r['sps'] / ref:.1f}×" for ref in refs]
        lines.append(markdown_row([r["label"], fmt(r["sps"], 0), *ratios, fmt(r["peak_rss_mb"], 0)]))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_throughput")


def _solve_cell(row: dict[str, Any]) -> str:
    if not row:
        return "—"
    if "error" in row:
        return f"failed: {row['error']}"
    if row.get("solved_at_train_s") is None:
        return f"not solved in {fmt(row.get('env_steps'), 0)} env steps"
    return f"{row['solved_at_train_s']:.1f} ({fmt(row['solved_at_env_steps'], 0)})"


def _solver(row: dict[str, Any]) -> str:
    """A solve row's case: ``a2c``, ``a2c_compiled`` or ``sb3_a2c`` (scripts/bench.py's SOLVERS)."""
    return row.get("name", row["algo"])


def bench_solve(root: Path) -> str:
    """Training seconds (env steps) to −110 on MountainCar-v0 per seed, a2c vs sb3_a2c."""
    rows = bench(root, "bench_solve")["solve"]
    head = ["seed", "a2c (tuned, torch env): s to −110 (env steps)", "a2c, hardware.compile=true: the same"]
    lines = markdown_head([*head, "sb3_a2c (Zoo): s to −110 (env steps)", "a2c / sb3_a2c"])
    by_case = {(r["seed"], _solver(r)): r for r in rows}
    for seed in sorted({r["seed"] for r in rows}):
        ours, comp, sb3 = (by_case.get((seed, name), {}) for name in ("a2c", "a2c_compiled", "sb3_a2c"))
        a, b = ours.get("solved_at_train_s"), sb3.get("solved_at_train_s")
        ratio = f"{a / b:.2f}" if a and b else "—"
        lines.append(markdown_row([str(seed), _solve_cell(ours), _solve_cell(comp), _solve_cell(sb3), ratio]))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_solve")


def bench_memory(root: Path) -> str:
    """Peak memory of one ordinary training run, W&B included."""
    mem = bench(root, "bench_throughput")["memory"]
    text = (
        f"Peak resident memory of `{mem['command']}`, the whole process tree (W&B's service process "
        f"included, W&B {mem['wandb_mode']}), sampled every 20 ms: **{mem['peak_tree_rss_mb']:.0f} MB**."
    )
    return text + "\n\n" + footer(root, "bench_throughput")


def bench_lm(root: Path) -> str:
    """Reply tokens per second on dialogue_lm: generation, the RL update, both, SFT."""
    rows = bench(root, "bench_lm")["lm"]
    lines = markdown_head(["replies per batch", "generation", "RL update", "RL (both)", "SFT"])
    for r in rows:
        n = next(o.split("=")[1] for o in r["overrides"] if o.startswith("env.num_envs="))
        cells = [fmt(r[k], 0) for k in ("generation_tps", "update_tps", "rl_tps", "sft_tps")]
        lines.append(markdown_row([n, *cells]))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_lm")


def bench_pretrained(root: Path) -> str:
    """Reply tokens per second of SmolLM2-135M on dialogue_text, seconds per update, peak memory."""
    rows = bench(root, "bench_pretrained")["pretrained"]
    head = ["torch threads", "generation (tokens/s)", "RL update (tokens/s)", "RL (both)", "s per update"]
    lines = markdown_head([*head, "peak memory (MB)"])
    for r in rows:
        cells = [fmt(r[k], 1) for k in ("generation_tps", "update_tps", "rl_tps", "s_per_update")]
        lines.append(markdown_row([str(r["threads"]), *cells, fmt(r["peak_rss_mb"], 0)]))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_pretrained")


def bench_envs(root: Path) -> str:
    """Env steps/s of the envs alone (random actions) per env, backend and number of envs."""
    rows = []
    for backend in ("torch", "gymnasium"):
        for r in bench(root, "bench_envs", f"{backend}.json")["env_only"]:
            n = next(o.split("=")[1] for o in r["overrides"] if o.startswith("env.num_envs="))
            rows.append((r["env"], backend, n, r["sps"]))
    sizes = sorted({n for *_, n, _ in rows}, key=int)
    lines = markdown_head(["env", "backend", *(f"{int(n):,} envs" for n in sizes)])
    for env, backend in dict.fromkeys((e, b) for e, b, *_ in rows):
        by_n = {n: sps for e, b, n, sps in rows if (e, b) == (env, backend)}
        lines.append(markdown_row([env, backend, *(fmt(by_n.get(n), 0) for n in sizes)]))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_envs")


def bench_anchors(root: Path) -> str:
    """pglab's a2c next to the jitted JAX A2C and sb3_a2c, env steps/s per (envs, threads),
    each the median of the run's alternating rounds."""
    anchors = bench(root, "bench_anchors")["anchors"]
    if "skipped" in anchors:
        return f"Skipped: {anchors['skipped']}\n\n" + footer(root, "bench_anchors")
    head = ["envs", "threads", "pglab a2c", "pglab a2c compiled", "jitted JAX A2C", "pglab / JAX"]
    lines = markdown_head([*head, "compiled / JAX", "sb3_a2c", "pglab / sb3_a2c", "compile s: pglab, JAX"])
    for r in anchors["rows"]:
        ours, comp, jax, sb3 = (r.get(f"{k}_sps") for k in ("a2c", "a2c_compiled", "jax", "sb3_a2c"))
        cells = [f"{r['num_envs']:,}", str(r["threads"]), fmt(ours, 0), fmt(comp, 0), fmt(jax, 0)]
        cells += [fmt(ours / jax, 2) if ours and jax else "—", fmt(comp / jax, 2) if comp and jax else "—"]
        cells += [fmt(sb3, 0), f"{fmt(ours / sb3, 1)}×" if ours and sb3 else "—"]
        cells += [f"{fmt(r.get('a2c_compiled_warmup_s'), 1)}, {fmt(r.get('jax_compile_s'), 1)}"]
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_anchors")


SOLVED_MOUNTAINCAR = -110.0  # conf/env/mountaincar.yaml's threshold, for the JAX runs' final returns


def bench_seeds(root: Path) -> str:
    """The whole five-seed table's wall time: pglab's a2c and sb3_a2c, one process per seed
    (the solve section's runs), next to the jitted JAX A2C vmapped over the seeds."""
    result = bench(root, "bench_solve")
    rows, jax = [r for r in result["solve"] if "process_s" in r], result.get("solve_jax")
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in rows}))
    lines = markdown_head(
        [f"A2C on MountainCar-v0, seeds {seeds}", "wall s, all seeds", "seeds at −110", "wall ÷ pglab a2c's"]
    )
    ours = sum(r["process_s"] for r in rows if _solver(r) == "a2c")

    def versus(wall: float) -> str:
        return fmt(wall / ours, 2) if ours else "—"

    solvers = {"a2c": "pglab a2c", "a2c_compiled": "pglab a2c, hardware.compile=true"}
    for name, what in (solvers | {"sb3_a2c": "sb3_a2c (Zoo, 1M-step budget)"}).items():
        runs = [r for r in rows if _solver(r) == name]
        if runs:
            wall = sum(r["process_s"] for r in runs)
            solved = sum(r.get("solved_at_env_steps") is not None for r in runs)
            label = f"{what}: one process per seed, one after another, stopping at −110"
            lines.append(markdown_row([label, fmt(wall, 0), f"{solved}/{len(runs)}", versus(wall)]))
    stack_rows = {
        "stack": "pglab a2c, hydra/launcher=vectorized: the seeds as one stack, one process",
        "alone": f"pglab a2c, one seed alone (seed {seeds.split(',')[0]}), the same way",
    }
    for name, what in stack_rows.items():
        row = result.get("seed_stack", {}).get(name)
        if row and "error" not in row and "skipped" not in row:
            solved = sum(x is not None for x in row["solved_at_env_steps"])
            wall = f"{fmt(row['process_s'], 1)} ({fmt(row['peak_tree_rss_mb'], 0)} MB peak)"
            lines.append(markdown_row([what, wall, f"{solved}/{len(row['seeds'])}", versus(row["process_s"])]))
    if jax and "error" not in jax:
        at = sum(x >= SOLVED_MOUNTAINCAR for x in jax["eval_returns"])
        label = f"jitted JAX A2C vmapped over the seeds: one process, {fmt(jax['env_steps_per_seed'], 0)} steps each"
        cells = [label, f"{fmt(jax['process_s'], 0)} (trace and compile {fmt(jax['compile_s'], 1)})"]
        cells += [f"{at}/{len(jax['eval_returns'])} at the end", versus(jax["process_s"])]
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_solve")


def bench_profile(root: Path) -> str:
    """Where a compiled a2c update's time goes (ms per update of n_steps × N envs), next to a
    whole update of the jitted JAX A2C at the same N on one thread (the anchors' figure)."""
    rows = bench(root, "bench_profile")["profile"]
    jax = {r["num_envs"]: r.get("jax_sps") for r in bench(root, "bench_anchors")["anchors"].get("rows", [])
           if r["threads"] == 1}  # fmt: skip
    head = ["envs", "ms per update: rollout", "update", "both", "jitted JAX A2C, the whole update"]
    lines = markdown_head([*head, "under the profiler: matrix products", "fused kernels", "the rest"])
    for r in rows:
        n, sps = r["num_envs"], jax.get(r["num_envs"])
        if "error" in r:
            lines.append(markdown_row([f"{n:,}", f"failed: {r['error']}", *[""] * 6]))
            continue
        both = r["rollout_ms"] + r["update_ms"]
        cells = [f"{n:,}", fmt(r["rollout_ms"], 2), fmt(r["update_ms"], 2), fmt(both, 2)]
        cells.append(fmt(r["n_steps"] * n / sps * 1e3, 2) if sps else "—")  # the anchor runs the same n_steps
        cells += [fmt(r[f"profiled_{k}_ms"], 2) for k in ("matmul", "kernels", "rest")]
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n\n" + footer(root, "bench_profile")
