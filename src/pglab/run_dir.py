"""A run folder: what is in it, and how a run opens, resumes, checkpoints and closes it.

What a run folder holds when the run ends (completed or failed):

* ``metrics.jsonl`` — one line per log, ``env_steps`` first (see :mod:`pglab.run_logger`);
* ``samples.jsonl`` — a few evaluation episodes as text (maze walks, dialogues), where
  the env can describe them;
* ``summary.json`` — a :class:`Summary`: status (``running|completed|failed``), error and
  traceback if failed, final evaluation, env steps, wall seconds, SPS, the resolved config;
* ``policy.pt`` — the final agent state (completed runs); ``checkpoint.pt`` while a run
  is under way (everything a resume needs);
* ``wandb/`` — the offline W&B run, when W&B runs offline;
* ``.hydra/`` and ``<job>.log`` — Hydra's record of the config and the log lines.

A run opens its folder with :meth:`RunFolder.open`: a completed run of the same
result-relevant config is skipped, an interrupted one resumes from its checkpoint, and any
other run's files are moved to ``earlier-<n>/`` first, so two runs never mix and nothing is
lost. Every file is written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pglab import random_state

log = logging.getLogger("pglab")

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
POLICY = "policy.pt"
CHECKPOINT = "checkpoint.pt"
RUN_FILES = (METRICS, SAMPLES, SUMMARY, POLICY, CHECKPOINT, "sb3_model.zip", "vecnormalize.pkl")
CHECKPOINT_FORMAT = 2  # a checkpoint of another format is not resumed (its files are kept aside)

# Keys that do not change what a run computes: where it runs, how it reports, how often it
# checkpoints, which tuned file set the values. A rerun that changes only these (a longer
# SLURM time limit after a time-out, W&B settings, another launcher) still skips or resumes.
NOT_RESULT_KEYS = (
    ("hardware", "cluster"),
    ("hardware", "num_threads"),
    ("logger",),
    ("progress_every_s",),
    ("checkpoint_every_steps",),
    ("tuned_file",),
)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def normalised(config: dict[str, Any]) -> Any:
    """A config as JSON would give it back, so configs from files and from Hydra compare equal."""
    return json.loads(json.dumps(config))


def result_config(config: dict[str, Any]) -> Any:
    """The part of a run's config that decides its results (what skip and resume compare)."""
    out = normalised(config)
    for path in NOT_RESULT_KEYS:
        node = out
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


@dataclass
class Summary:
    """``summary.json``: what a run is or was (None: not known, or not reached).

    ``solved_at_*``: the first evaluation whose mean return reached ``env.solved_threshold``
    (env steps, wall seconds, and training seconds without evaluations). ``final``: the final
    evaluation's metrics without the ``eval/`` prefix, and its episode count.
    """

    status: str
    config: dict[str, Any]
    algo: str | None = None
    env: str | None = None
    seed: int | None = None
    env_steps: int = 0
    solved_at_env_steps: int | None = None
    solved_at_wall_s: float | None = None
    solved_at_train_s: float | None = None
    sft: dict[str, float] | None = None
    resumed_from_env_steps: int | None = None
    run_dir: str | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    slurm_job_id: str | None = field(default_factory=lambda: os.environ.get("SLURM_JOB_ID"))  # a SLURM launcher's job
    wandb_mode: str | None = None
    wandb_dir: str | None = None
    eval_seeds: list[int] | None = None  # the same for every algorithm with this run seed
    wall_s: float | None = None
    train_s: float | None = None
    sps: float | None = None
    final: dict[str, float] | None = None
    solved_threshold: float | None = None
    error: str | None = None
    traceback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Checkpoint:
    """An interrupted run's ``checkpoint.pt``: the agent, the RNG states, and ``run_state``
    (the training loop's own state, see :meth:`pglab.loop.TrainingLoop.state_dict`)."""

    agent: dict[str, Any]
    env_steps: int
    rng: dict[str, Any]
    run_state: dict[str, Any]


@dataclass
class Opened:
    """What :meth:`RunFolder.open` found: a completed run to skip, a checkpoint to resume
    from, or neither (a fresh start)."""

    completed: Summary | None = None
    checkpoint: Checkpoint | None = None


class RunFolder:
    """One run's folder (see the module docstring).

    Args:
        path: the folder (made if missing).
        config: the run's resolved config as a plain dict (what skip and resume compare).
    """

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config

    def open(self) -> Opened:
        """Skip, resume or start afresh (moving an earlier run's files aside)."""
        done = self.completed_run()
        if done is not None:
            log.info("%s: completed earlier with this config; skipped", self.path)
            return Opened(completed=done)
        ckpt = self.resumable()
        if ckpt is None:
            self.keep_earlier_run()
            return Opened()
        log.info("%s: resuming from the checkpoint at %d env steps", self.path, ckpt.env_steps)
        for name in (METRICS, SAMPLES):
            self._truncate_jsonl(self.path / name, ckpt.env_steps)
        return Opened(checkpoint=ckpt)

    def completed_run(self) -> Summary | None:
        """The summary of a run completed here with this very config, if there is one."""
        try:
            data = json.loads((self.path / SUMMARY).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("status") != "completed":
            return None
        if result_config(data.get("config") or {}) != result_config(self.config):
            return None
        known = {f.name for f in dataclasses.fields(Summary)}
        return Summary(**{k: v for k, v in data.items() if k in known})

    def resumable(self) -> Checkpoint | None:
        """The checkpoint of an interrupted run of this very config here, if any."""
        path = self.path / CHECKPOINT
        if not path.exists():
            return None
        try:
            ckpt = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # a foreign or damaged file: start afresh, keep it aside
            log.warning("cannot read %s (%s); starting afresh", path, err)
            return None
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
            return None
        if ckpt.get("format") != CHECKPOINT_FORMAT or result_config(ckpt["config"]) != result_config(self.config):
            return None
        return Checkpoint(ckpt["agent"], int(ckpt["env_steps"]), ckpt["rng"], ckpt["run_state"])

    def keep_earlier_run(self) -> Path | None:
        """Move an earlier run's files into ``earlier-<n>/`` before a new run writes here."""
        present = [name for name in RUN_FILES if (self.path / name).exists()]
        if not present:
            return None
        n = 1
        while (self.path / f"earlier-{n}").exists():
            n += 1
        dest = self.path / f"earlier-{n}"
        dest.mkdir()
        for name in present:
            os.replace(self.path / name, dest / name)
        log.warning("%s held an earlier run; its files were moved to %s", self.path, dest)
        return dest

    @staticmethod
    def _truncate_jsonl(path: Path, max_env_steps: int) -> None:
        """Keep the lines logged up to ``max_env_steps`` (what the checkpoint covers), atomically."""
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["env_steps"] <= max_env_steps:
                    keep.append(line)
            except (ValueError, KeyError):
                break  # a line cut by the kill: everything after it is lost anyway
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in keep))
        os.replace(tmp, path)

    def write_summary(self, summary: Summary) -> None:
        write_json_atomic(self.path / SUMMARY, summary.as_dict())

    def save_checkpoint(self, agent_state: dict[str, Any], env_steps: int, run_state: dict[str, Any]) -> None:
        """``checkpoint.pt``: everything a resume needs, the RNG states taken now."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "agent": agent_state,
            "env_steps": env_steps,
            "rng": random_state.capture(),
            "run_state": run_state,
            "config": normalised(self.config),
        }
        save_atomic(self.path / CHECKPOINT, payload)

    def save_policy(self, agent_state: dict[str, Any], algo: str, env: str, seed: int) -> None:
        """``policy.pt``, the final agent; loadable with ``torch.load(path, weights_only=True)``.
        The resume checkpoint goes: the policy holds the final agent."""
        payload = {"agent": agent_state, "algo": algo, "env": env, "seed": seed, "config": self.config}
        save_atomic(self.path / POLICY, payload)

    def remove_checkpoint(self) -> None:
        (self.path / CHECKPOINT).unlink(missing_ok=True)
