"""scripts/bench.py's anchors section: the JAX A2C is found or skipped with one line, and its table."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

HAS_JAX = subprocess.run([sys.executable, "-c", "import jax, gymnax"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(HAS_JAX, reason="this Python has jax and gymnax")
def test_a_python_without_jax_is_refused_with_how_to_make_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(bench.JAX_PYTHON_ENV, raising=False)
    monkeypatch.setattr(bench, "JAX_VENV_PYTHON", tmp_path / "none" / "python")
    python, why = bench.find_jax_python(sys.executable)
    assert python is None
    assert why.startswith(f"{sys.executable} cannot import jax, gymnax, flax and optax")
    assert bench.JAX_INSTALL in why
    python, why = bench.find_jax_python(str(tmp_path / "missing"))
    assert python is None and why.startswith(f"--jax-python {tmp_path / 'missing'}: no such executable")
    python, why = bench.find_jax_python(None)  # no candidate exists
    assert python is None and why.startswith("no Python with jax and gymnax")


def test_the_anchor_table_gives_the_ratios_and_a_skip_is_one_line() -> None:
    rows = [
        {"label": "128 envs, 1 thread(s)", "a2c_sps": 240_000.0, "jax_sps": 480_000.0, "sb3_a2c_sps": 120_000.0}
        | {"a2c_compiled_sps": 360_000.0},
        {"label": "16 envs, 1 thread(s)", "a2c_sps": 50_000.0, "jax_error": "jax: out of memory"},
    ]
    lines = bench.anchor_report({"rows": rows})
    assert lines[3] == "| 128 envs, 1 thread(s) | 240,000 | 360,000 | 480,000 | 0.50 | 0.75 | 120,000 | 2.0× |"
    assert lines[4] == "| 16 envs, 1 thread(s) | 50,000 | — | — | jax: out of memory | — | — | — |"
    assert bench.anchor_report({"skipped": "no Python with jax"}) == ["", "Anchors skipped: no Python with jax"]
    assert bench.anchor_report(None) == []


def test_the_seed_table_sums_each_algorithms_processes_and_counts_the_jax_seeds_at_the_threshold() -> None:
    solves = [
        {"seed": 0, "algo": "a2c", "process_s": 10.0, "solved_at_env_steps": 100_000},
        {"seed": 1, "algo": "a2c", "process_s": 12.5, "solved_at_env_steps": None},
        {"seed": 0, "algo": "sb3_a2c", "process_s": 80.0, "solved_at_env_steps": 400_000},
        {"seed": 1, "algo": "sb3_a2c", "process_s": 90.0, "solved_at_env_steps": 500_000},
    ]
    jax = {"env_steps_per_seed": 3_000_000, "process_s": 23.4, "compile_s": 2.8, "eval_returns": [-101.5, -112.0]}
    lines = bench.seed_table_report(solves, jax)
    assert lines[3] == "| pglab a2c: one process per seed, one after another, stopping at −110 | 22 | 1/2 |"
    assert lines[4] == "| sb3_a2c (Zoo): one process per seed, one after another, stopping at −110 | 170 | 2/2 |"
    assert lines[5] == (
        "| jitted JAX A2C vmapped over the seeds: one process, 3,000,000 steps each | 23 (compile 3) | 1/2 at the end |"
    )
    assert bench.seed_table_report([], None) == []
    stack = {
        "stack": {"process_s": 18.4, "peak_tree_rss_mb": 486.2, "seeds": [0, 1], "solved_at_env_steps": [1, None]},
        "alone": {"process_s": 9.6, "peak_tree_rss_mb": 465.0, "seeds": [0], "solved_at_env_steps": [1]},
    }
    lines = bench.seed_table_report(solves, None, stack)
    stacked = "pglab a2c, hydra/launcher=vectorized: the seeds as one stack, one process"
    assert lines[5] == f"| {stacked} | 18 (486 MB peak) | 1/2 |"
    assert lines[6] == "| pglab a2c, one seed alone, the same way | 10 (465 MB peak) | 1/1 |"
    skipped = bench.seed_table_report(solves, None, {"stack": {"skipped": "seed stacks run on the CPU"}})
    assert skipped[5] == f"| {stacked} | skipped: seed stacks run on the CPU | |"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: run it where one exists")
def test_the_gpu_path_trains_and_measures_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--device", "cuda", "--sections", "throughput"]
    cmd += ["--num-envs", "1024", "--seconds", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["throughput"]
    assert rows and all(r["device"] == "cuda" and r["sps"] > 0 for r in rows if "error" not in r)
    run = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "algo=a2c", "env=mountaincar", "hardware=cuda", "total_steps=20000",
         "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["config"]["hardware"]["device"] == "cuda"
