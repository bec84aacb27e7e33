"""A finished (or checkpointed) run folder read back: its typed config and its agent's state.

What ``pglab-eval`` and ``pglab-replay`` start from. Every way a folder can be wrong — not
there, a sweep folder, a run that failed before it saved an agent, a damaged
``policy.pt``, a config of another pglab version — is a :class:`SavedRunError` whose
message is one line naming the folder and what to do.

The config is the one the run recorded in ``summary.json``, typed again by composing its
algo and env options from ``conf/`` (for their schemas) and merging the recorded values
over them, so that a tuned file changed since is not applied to an old run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pglab.algos.common import Agent
from pglab.cli import recorded_config
from pglab.config import Config, ConfigError, first_line
from pglab.envs import EnvSpec, make_vec_env, resolve_env
from pglab.preflight import resolve_device
from pglab.report.identity import summary_problem
from pglab.run_dir import CHECKPOINT, POLICY, SUMMARY


class SavedRunError(Exception):
    """A folder that cannot be evaluated or replayed; the message is one line."""


@dataclass
class SavedRun:
    """A run folder read back.

    Attributes:
        path: the folder.
        summary: its ``summary.json``.
        cfg: the config it ran with, typed and validated.
        agent: the agent's state (``Agent.load_state_dict``), from ``policy.pt`` (a completed
            run) or ``checkpoint.pt`` (an interrupted one).
        source: which of the two files it came from.
    """

    path: Path
    summary: dict[str, Any]
    cfg: Config
    agent: dict[str, Any]
    source: str


def open_run(path: Path) -> SavedRun:
    """Read ``path`` back; raises :class:`SavedRunError` (one line) when it cannot be."""
    if not path.exists():
        raise SavedRunError(f"{path}: no such folder; pass a run folder (it holds {SUMMARY})")
    if not path.is_dir():
        raise SavedRunError(f"{path}: not a folder; pass a run folder (it holds {SUMMARY})")
    summary = _summary(path)
    if summary["status"] == "failed":
        raise SavedRunError(f"{path}: the run failed ({summary.get('error') or 'see its run.log'}); rerun it")
    source = POLICY if summary["status"] == "completed" else CHECKPOINT  # interrupted: its last checkpoint
    if not (path / source).is_file():
        error = f" ({summary['error']})" if summary.get("error") else ""
        raise SavedRunError(f"{path}: the run is {summary['status']}{error} and saved no agent ({source}); rerun it")
    try:
        payload = torch.load(path / source, weights_only=True, map_location="cpu")
        agent = payload["agent"]
    except Exception as err:  # unpickling raises any type; the message names it
        message = f"{path / source}: does not load ({type(err).__name__}: {first_line(err)}); rerun the run"
        raise SavedRunError(message) from None
    check_belongs(path / source, payload, summary)
    return SavedRun(path, summary, typed_config(path, summary["config"]), agent, source)


def check_belongs(file: Path, payload: dict[str, Any], summary: dict[str, Any]) -> None:
    """The agent file is this run's: ``policy.pt`` names the summary's algo, env and seed; a
    checkpoint carries the summary's run id."""
    keys = ("algo", "env", "seed") if file.name == POLICY else ("run_id",)
    for key in keys:
        if key in payload and key in summary and payload[key] != summary[key]:
            mine, theirs = summary[key], payload[key]
            raise SavedRunError(f"{file}: another run's agent ({key} {theirs!r}, summary.json says {mine!r})")


def choose_device(cfg: Config, asked: str | None) -> tuple[torch.device, str | None]:
    """Where to evaluate: ``asked`` (``--device``), else the device the run trained on
    (``hardware.device``), else the CPU. Also a note when that is not the run's own device:
    the metrics then need not equal the run's to the last bit (other kernels).

    Raises:
        SavedRunError: ``asked`` is not a device, or a CUDA device without CUDA.
    """
    try:
        device = torch.device(asked) if asked else None
    except RuntimeError as err:
        raise SavedRunError(f"--device={asked}: not a torch device ({first_line(err)})") from None
    if device is not None and device.type == "cuda" and not torch.cuda.is_available():
        raise SavedRunError(f"--device={asked}: no CUDA device is available here; use --device cpu")
    try:
        own = resolve_device(cfg.hardware)
    except ConfigError:  # trained on a GPU this machine lacks
        own = None
    chosen = device or own or torch.device("cpu")
    if own is None or chosen.type != own.type:
        return chosen, f"evaluating on {chosen.type}, not the run's hardware.device={cfg.hardware.device.value}"
    return chosen, None


def load_agent(saved: SavedRun, device: torch.device) -> tuple[Agent, EnvSpec]:
    """The saved agent rebuilt from its config and its state loaded (normaliser statistics,
    reference policy and all), and its resolved env as evaluation sees it (the true reward:
    :meth:`~pglab.envs.EnvSpec.evaluation`)."""
    from pglab.experiment import build_agent  # the experiment imports the world: only when needed

    cfg = saved.cfg
    spec = resolve_env(cfg.env)
    train_env = make_vec_env(spec, cfg.env.num_envs, seed=cfg.seed, device=device)  # the agent's shapes
    try:
        agent = build_agent(cfg, train_env, device, spec)
        agent.load_state_dict(saved.agent)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        message = f"{saved.path / saved.source}: the agent does not fit its config ({_one_line(err)})"
        raise SavedRunError(message) from None
    finally:
        train_env.close()
    return agent, spec.evaluation()


def _summary(path: Path) -> dict[str, Any]:
    file = path / SUMMARY
    if not file.is_file():
        runs = sorted(p.parent for p in path.glob(f"*/{SUMMARY}"))
        if runs:
            raise SavedRunError(f"{path}: a sweep folder of {len(runs)} runs; pass one of them, e.g. {runs[0]}")
        raise SavedRunError(f"{path}: no {SUMMARY}, not a pglab run folder")
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise SavedRunError(f"{file}: unreadable ({first_line(err)})") from None
    problem = summary_problem(data)
    if problem is not None:
        raise SavedRunError(f"{file}: damaged: {problem}")
    return data


def typed_config(path: Path, recorded: dict[str, Any]) -> Config:
    """The recorded config as :class:`~pglab.config.Config` (see the module docstring)."""
    try:
        return recorded_config(recorded)
    except ConfigError as err:
        raise SavedRunError(
            f"{path}: its config does not fit this pglab ({first_line(err)}); use the pglab version that ran it"
        ) from None


def _one_line(err: BaseException, limit: int = 240) -> str:
    """A multi-line message (torch's state-dict mismatches) folded into one line, cut at ``limit``."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
