"""A run folder: what is in it, and how a run opens, resumes, checkpoints and closes it.

What a run folder holds when the run ends (completed or failed):

* ``metrics.jsonl`` — one line per log, ``env_steps`` first (see :mod:`pglab.run_logger`);
* ``samples.jsonl`` — a few evaluation episodes as text (maze walks, dialogues), where
  the env can describe them;
* ``summary.json`` — a :class:`Summary`: status (``running|completed|failed|interrupted``), error and
  traceback if failed, final evaluation, env steps, wall seconds, SPS, the resolved config;
* ``policy.pt`` — the final agent state (completed runs); ``checkpoint.pt`` while a run
  is under way (everything a resume needs);
* ``wandb/`` — the offline W&B run, when W&B runs offline;
* ``.hydra/`` and ``<job>.log`` — Hydra's record of the config and the log lines.

A run opens its folder with :meth:`RunFolder.open`: a completed run of the same
result-relevant config is skipped, an interrupted one resumes from its checkpoint, and any
other run's files are moved to ``earlier-<n>/`` first, so two runs never mix and nothing is
lost. Every file is written atomically (a temporary file, then a rename).

Damage never stops a run: a ``summary.json`` that cannot be trusted
(:func:`pglab.report.identity.summary_problem`) counts as no completed run, and a
``checkpoint.pt`` that does not fit the folder (unreadable, another format, another config,
or another run: ``summary.json`` and ``checkpoint.pt`` both carry the folder's ``run_id``,
so a checkpoint copied in from another folder is never resumed) is moved to
``earlier-<n>/`` with the rest, one warning line saying why, and the run starts afresh.
A resume keeps every good ``metrics.jsonl`` / ``samples.jsonl`` line up to the checkpoint
and names the damaged lines it drops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from pglab import random_state
from pglab.machine import machine_info
from pglab.report.identity import NOT_RESULT_KEYS as NOT_RESULT_KEYS  # declared there, for the report too
from pglab.report.identity import VIDEO_DIR as VIDEO_DIR
from pglab.report.identity import finite_or_none, normalised, result_config, summary_problem, training_video_steps

log = logging.getLogger("pglab")

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
POLICY = "policy.pt"
CHECKPOINT = "checkpoint.pt"
RUN_FILES = (METRICS, SAMPLES, SUMMARY, POLICY, CHECKPOINT, "sb3_model.zip", "vecnormalize.pkl", VIDEO_DIR)
EVAL_FILES = "eval_*.json"  # pglab-eval's records of the run's agent: they go with the run
CHECKPOINT_FORMAT = 2  # a checkpoint of another format is not resumed (its files are kept aside)
MAX_LINES_NAMED = 20  # damaged .jsonl lines named one by one in the warning; more are counted


@contextlib.contextmanager
def _replacing(path: Path, mode: str) -> Iterator[IO[Any]]:
    """A temporary file beside ``path`` that replaces it once the block has written it.

    A kill never leaves half a file; an error while writing (a full disk) leaves ``path`` as
    it was and removes the temporary file, then raises the error.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`_replacing`): readers never see half a file."""
    with _replacing(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text atomically (see :func:`_replacing`)."""
    with _replacing(path, "w") as f:
        f.write(text)


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` atomically (see :func:`_replacing`). Through a file object, so that a
    full disk raises ``OSError(ENOSPC)`` rather than torch's own RuntimeError."""
    with _replacing(path, "wb") as f:
        torch.save(payload, f)


@dataclass
class Summary:
    """``summary.json``: what a run is or was (None: not known, or not reached).

    ``solved_at_*``: the first evaluation that met ``solved``, the env's criterion
    (``env.solved``, see :mod:`pglab.solved`): env steps, wall seconds, and training
    seconds without evaluations. ``final``: the final evaluation's metrics without the
    ``eval/`` prefix, and its episode count.
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
    machine: dict[str, str] = field(default_factory=machine_info)  # CPU, torch build, Python
    pid: int = field(default_factory=os.getpid)
    slurm_job_id: str | None = field(default_factory=lambda: os.environ.get("SLURM_JOB_ID"))  # a SLURM launcher's job
    wandb_mode: str | None = None
    wandb_dir: str | None = None
    wandb_offline_reason: str | None = None  # why a run meant to be online logged offline
    eval_seeds: list[int] | None = None  # the same for every algorithm with this run seed
    wall_s: float | None = None
    train_s: float | None = None
    sps: float | None = None
    final: dict[str, float] | None = None
    solved: dict[str, float] | None = None  # env.solved: evaluation metric -> minimum
    error: str | None = None
    traceback: str | None = None
    checkpoint_env_steps: int | None = None  # an interrupted run: where its checkpoint is
    run_id: str | None = None  # this folder's run, which its checkpoint.pt names too (set by RunFolder)

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
    run_id: str | None = None  # the run it belongs to (RunFolder.run_id)


@dataclass
class Opened:
    """What :meth:`RunFolder.open` found: a completed run to skip, a checkpoint to resume
    from, or neither (a fresh start)."""

    completed: Summary | None = None
    checkpoint: Checkpoint | None = None


class CheckpointDoesNotFit(Exception):
    """A checkpoint that :meth:`RunFolder.open` accepted but the agent cannot load (its
    shapes or keys are not this config's agent): the caller sets it aside with
    :meth:`RunFolder.set_aside_checkpoint` and starts the run afresh."""


class RunFolder:
    """One run's folder (see the module docstring).

    Args:
        path: the folder (made if missing).
        config: the run's resolved config as a plain dict (what skip and resume compare).

    ``run_id`` names the run that owns the folder now: a fresh start draws a new one, a
    resume takes its checkpoint's, a skip its summary's. Every ``summary.json`` and
    ``checkpoint.pt`` written here carries it, so a checkpoint copied in from another
    folder (even of the same config) is never resumed as if it were this folder's run.
    """

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.run_id: str | None = None

    def open(self) -> Opened:
        """Skip, resume or start afresh (moving an earlier run's files aside, saying why)."""
        summary, summary_damage = self._read_summary()
        done = self._completed(summary)
        if done is not None:
            log.info("%s: completed earlier with this config; skipped", self.path)
            self.run_id = done.run_id
            return Opened(completed=done)
        ckpt, unfit = self._checkpoint(summary, summary_damage)
        if ckpt is None:
            self.keep_earlier_run(unfit or (f"{SUMMARY} is damaged ({summary_damage})" if summary_damage else None))
            self.run_id = uuid.uuid4().hex
            return Opened()
        self.run_id = ckpt.run_id
        log.info("%s: resuming from the checkpoint at %d env steps", self.path, ckpt.env_steps)
        for name in (METRICS, SAMPLES):
            self._truncate_jsonl(self.path / name, ckpt.env_steps)
        self._drop_videos_after(ckpt.env_steps)
        return Opened(checkpoint=ckpt)

    def _drop_videos_after(self, max_env_steps: int) -> None:
        """Remove training videos of evaluations after the checkpoint (``<env_steps>.mp4`` past
        it, and unfinished ``.part`` files): the resumed run records them again."""
        for video in (self.path / VIDEO_DIR).glob("*"):
            steps = training_video_steps(video)
            if video.name.startswith(".") or (steps is not None and steps > max_env_steps):
                video.unlink(missing_ok=True)

    def _read_summary(self) -> tuple[dict[str, Any] | None, str | None]:
        """This folder's ``summary.json`` if it can be trusted, else ``None`` and why not
        (``None, None``: there is none)."""
        path = self.path / SUMMARY
        if not path.exists():
            return None, None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
            return None, f"cannot be read: {err}"
        problem = summary_problem(data)
        return (None, problem) if problem else (data, None)

    def _completed(self, data: dict[str, Any] | None) -> Summary | None:
        """The summary of a run completed here with this very config, if ``data`` is one."""
        if data is None or data["status"] != "completed":
            return None
        if result_config(data["config"]) != result_config(self.config):
            return None
        known = {f.name for f in dataclasses.fields(Summary)}
        return Summary(**{k: v for k, v in data.items() if k in known})

    def completed_run(self) -> Summary | None:
        """The summary of a run completed here with this very config, if there is one."""
        return self._completed(self._read_summary()[0])

    def resumable(self) -> Checkpoint | None:
        """The checkpoint of an interrupted run of this very config and this folder's run, if any."""
        summary, damage = self._read_summary()
        return self._checkpoint(summary, damage)[0]

    def _checkpoint(self, summary: dict[str, Any] | None, damage: str | None) -> tuple[Checkpoint | None, str | None]:
        """The checkpoint to resume from, or ``None`` and why there is none that fits
        (``None, None``: there is no checkpoint)."""
        path = self.path / CHECKPOINT
        if not path.exists():
            return None, None
        try:
            ckpt = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # a foreign or damaged file: start afresh, keep it aside
            return None, f"{CHECKPOINT} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]})"
        unfit = self._mismatch(ckpt, summary, damage)
        if unfit is not None:
            return None, f"{CHECKPOINT} does not fit this folder: {unfit}"
        return Checkpoint(ckpt["agent"], ckpt["env_steps"], ckpt["rng"], ckpt["run_state"], ckpt.get("run_id")), None

    def _mismatch(self, ckpt: Any, summary: dict[str, Any] | None, damage: str | None) -> str | None:
        """Why a loaded checkpoint is not this folder's interrupted run of this config (``None``: it is).

        The config is compared through :func:`result_config`; the run through the run id
        that ``summary.json`` and ``checkpoint.pt`` both carry (checkpoints and summaries
        written before run ids existed carry none, and still match each other).
        """
        parts = {"agent": dict, "env_steps": int, "rng": dict, "run_state": dict, "config": dict}
        if not isinstance(ckpt, dict) or any(not isinstance(ckpt.get(k), t) for k, t in parts.items()):
            return "not a pglab checkpoint (it lacks the agent, env steps, RNG, loop state or config)"
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            return f"its format is {ckpt.get('format')!r}, not {CHECKPOINT_FORMAT}"
        if result_config(ckpt["config"]) != result_config(self.config):
            return "it was saved by a run of another config"
        if summary is None:
            known = f"{SUMMARY} is damaged ({damage})" if damage else f"there is no {SUMMARY}"
            return f"{known}, so the run it belongs to is unknown"
        if ckpt.get("run_id") != summary.get("run_id"):
            return f"it belongs to run {ckpt.get('run_id')}, this folder's {SUMMARY} to run {summary.get('run_id')}"
        return None

    def keep_earlier_run(self, reason: str | None = None) -> Path | None:
        """Move an earlier run's files into ``earlier-<n>/`` before a new run writes here,
        with one warning line (naming ``reason``, when a damaged or unfit file is the cause)."""
        present = [name for name in RUN_FILES if (self.path / name).exists()]
        present += sorted(p.name for p in self.path.glob(EVAL_FILES))
        if not present:
            return None
        n = 1
        while (self.path / f"earlier-{n}").exists():
            n += 1
        dest = self.path / f"earlier-{n}"
        dest.mkdir()
        for name in present:
            os.replace(self.path / name, dest / name)
        if reason:
            log.warning("%s: %s; starting afresh, the earlier files were moved to %s", self.path, reason, dest)
        else:
            log.warning("%s held an earlier run; its files were moved to %s", self.path, dest)
        return dest

    def set_aside_checkpoint(self, reason: str) -> Path:
        """Move the checkpoint, and the files of the run it belongs to, into ``earlier-<n>/``
        (one warning line naming ``reason``) so that the run starts afresh here.

        For what only the agent can tell (:class:`CheckpointDoesNotFit`: its state does not
        load); :meth:`open` sets aside every other checkpoint that does not fit by itself.

        Raises:
            FileNotFoundError: There is no checkpoint here.
        """
        if not (self.path / CHECKPOINT).exists():
            raise FileNotFoundError(f"{self.path / CHECKPOINT}: no checkpoint to set aside")
        dest = self.keep_earlier_run(f"{CHECKPOINT} does not fit this folder: {reason}")
        assert dest is not None  # the checkpoint was there
        self.run_id = uuid.uuid4().hex
        return dest

    @staticmethod
    def _truncate_jsonl(path: Path, max_env_steps: int) -> None:
        """Keep every good line logged up to ``max_env_steps`` (what the checkpoint covers), atomically.

        A damaged line (not a JSON object with a numeric ``env_steps``: a line cut by a
        kill, a hand edit) is dropped and named in one warning; the good lines around it
        are kept. Lines after the checkpoint go: the resumed run logs them again.
        """
        if not path.exists():
            return
        keep, damaged = [], []
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            steps = _env_steps_of(line)
            if steps is None:
                damaged.append(number)
            elif steps <= max_env_steps:
                keep.append(line)
        if damaged:
            plural = "" if len(damaged) == 1 else "s"
            shown = ", ".join(str(n) for n in damaged[:MAX_LINES_NAMED])
            more = f" and {len(damaged) - MAX_LINES_NAMED} more" if len(damaged) > MAX_LINES_NAMED else ""
            log.warning(
                "%s: dropped %d damaged line%s (line%s %s%s); kept the %d good lines up to env step %d",
                path, len(damaged), plural, plural, shown, more, len(keep), max_env_steps,
            )  # fmt: skip
        write_text_atomic(path, "".join(f"{line}\n" for line in keep))

    def write_summary(self, summary: Summary) -> None:
        """``summary.json``, stamped with this folder's run id."""
        summary.run_id = self._own_run_id()
        write_json_atomic(self.path / SUMMARY, summary.as_dict())

    def _own_run_id(self) -> str:
        """The run id of the run writing here (drawn now if :meth:`open` did not set one)."""
        if self.run_id is None:
            self.run_id = uuid.uuid4().hex
        return self.run_id

    def save_checkpoint(self, agent_state: dict[str, Any], env_steps: int, run_state: dict[str, Any]) -> None:
        """``checkpoint.pt``: everything a resume needs, the RNG states taken now."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "agent": agent_state,
            "env_steps": env_steps,
            "rng": random_state.capture(),
            "run_state": run_state,
            "config": normalised(self.config),
            "run_id": self._own_run_id(),
        }
        save_atomic(self.path / CHECKPOINT, payload)

    def save_policy(self, agent_state: dict[str, Any], algo: str, env: str, seed: int) -> None:
        """``policy.pt``, the final agent; loadable with ``torch.load(path, weights_only=True)``.
        The resume checkpoint goes: the policy holds the final agent."""
        payload = {"agent": agent_state, "algo": algo, "env": env, "seed": seed, "config": self.config}
        save_atomic(self.path / POLICY, payload)

    def remove_checkpoint(self) -> None:
        (self.path / CHECKPOINT).unlink(missing_ok=True)


def _env_steps_of(line: str) -> float | None:
    """A ``.jsonl`` line's ``env_steps``; ``None`` for a damaged line."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    steps = row.get("env_steps") if isinstance(row, dict) else None
    return finite_or_none(steps) if not isinstance(steps, str) else None
