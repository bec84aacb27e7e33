"""Shared fixtures: compose the real configs, run the real entrypoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from pglab.config import Config, validate

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
RUN_PY = ROOT / "run.py"


def compose_config(*overrides: str) -> DictConfig:
    """The job config ``run.py`` would get for these overrides (no ``hydra`` node)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def make_config(*overrides: str) -> Config:
    """Composed and validated; W&B off unless an override turns it on."""
    return validate(compose_config("logger=none", *overrides))


def clean_env() -> dict[str, str]:
    """The environment of a subprocess: no W&B credentials, no W&B mode, plain output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["NETRC"] = "/nonexistent/netrc"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_py(*args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None):
    """Run ``python run.py ARGS`` in ``cwd``; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, str(RUN_PY), *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(autouse=True)
def _no_wandb_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process runs: no API key and no netrc, so ``logger.mode=auto`` means offline."""
    for key in list(os.environ):
        if key.startswith("WANDB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
