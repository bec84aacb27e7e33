"""scripts/bench.py's anchors section: the JAX A2C is found or skipped with one line, and its table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

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
    python, why = bench.find_jax_python(str(tmp_path / "missing"))  # no candidate exists
    assert python is None and why.startswith("no Python with jax and gymnax")


def test_the_anchor_table_gives_the_ratios_and_a_skip_is_one_line() -> None:
    rows = [
        {"label": "128 envs, 1 thread(s)", "a2c_sps": 240_000.0, "jax_sps": 480_000.0, "sb3_a2c_sps": 120_000.0},
        {"label": "16 envs, 1 thread(s)", "a2c_sps": 50_000.0, "jax_error": "jax: out of memory"},
    ]
    lines = bench.anchor_report({"rows": rows})
    assert lines[3] == "| 128 envs, 1 thread(s) | 240,000 | 480,000 | 0.50 | 120,000 | 2.0× |"
    assert lines[4] == "| 16 envs, 1 thread(s) | 50,000 | — | jax: out of memory | — | — |"
    assert bench.anchor_report({"skipped": "no Python with jax"}) == ["", "Anchors skipped: no Python with jax"]
    assert bench.anchor_report(None) == []
