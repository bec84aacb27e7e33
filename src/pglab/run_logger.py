"""Run logging: a local metrics file first, the same data to Weights & Biases second.

* ``metrics.jsonl``: one JSON object per :meth:`RunLogger.log` call, ``env_steps``
  first, flushed at once — a killed run keeps every line it logged.
* W&B: one run per job. ``mode=auto`` is online only when an API key is configured
  (``WANDB_API_KEY``, an identity-token file, or a ``~/.netrc`` entry for the W&B
  host), otherwise offline into ``<run dir>/wandb``; pglab always passes the mode
  explicitly, so wandb never prompts and never waits for a login. The run object is held
  here and logged to directly — never the global ``wandb.log`` — and any run a crashed
  job left open in this process is finished first, so no job's run ever receives
  another job's data. :meth:`RunLogger.finish` marks the run failed (exit code 1) when
  the job failed.
* Never a wait on the network: before an online init the W&B server is asked once
  (:mod:`pglab.wandb_reach`, at most ``REACH_TIMEOUT_S``); unreachable, the run goes
  offline at once. A server that answers but whose init then fails or stalls falls back
  to offline after ``ONLINE_INIT_TIMEOUT_S``. Either way one warning line says why and
  how to sync, and :attr:`RunLogger.offline_reason` keeps the reason for ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pglab.config import LoggerConfig, WandbMode
from pglab.wandb_reach import DEFAULT_WANDB_BASE_URL, check_reachable, wandb_endpoint

log = logging.getLogger(__name__)

# Past this an online init falls back to offline. Only a server that has just answered
# HTTP gets this far (wandb_reach), where a healthy init takes a few seconds; wandb's own
# default of 90 s would hold every job of a sweep against a stalled server, and falling
# back early costs nothing but a later `wandb sync`.
ONLINE_INIT_TIMEOUT_S = 10.0


def _wandb_hosts() -> list[str]:
    """Hosts a ``wandb login`` may have written credentials for: the configured base URL
    (``WANDB_BASE_URL`` or wandb's own default) and the classic ``api.wandb.ai``."""
    urls = [os.environ.get("WANDB_BASE_URL", ""), wandb_endpoint().base_url, DEFAULT_WANDB_BASE_URL]
    hosts = [urlsplit(u).hostname for u in urls if u]
    return list(dict.fromkeys(h for h in hosts if h))


def wandb_api_key_configured() -> bool:
    """True when wandb would find credentials without prompting."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entries = netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):
        return False
    return any((auth := entries.authenticators(host)) and auth[2] for host in _wandb_hosts())


def resolve_wandb_mode(cfg: LoggerConfig) -> str:
    """The wandb mode this run uses: ``online``, ``offline`` or ``disabled``.

    ``auto`` honours ``WANDB_MODE`` when it is set to one of these (how users and CI
    switch W&B off); otherwise online only with an API key configured, else offline.
    """
    if cfg.backend == "none" or cfg.mode == WandbMode.disabled:
        return "disabled"
    if cfg.mode == WandbMode.auto:
        env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
        if env_mode in ("online", "offline", "disabled"):
            return env_mode
        return "online" if wandb_api_key_configured() else "offline"
    return cfg.mode.value


def _no_wandb_analytics() -> None:
    """Turn off wandb's own usage metrics (about the SDK, nothing of the run's) for this process.

    wandb sends them whenever the *process-wide* mode is not offline — pglab sets the mode
    per run, so offline runs too — and flushes them at exit, waiting up to 10 s per
    exporter for a server that does not answer (measured: +10 s on a 7 s offline run,
    +14..20 s after an online init that stalled). Once an init has recorded them they
    cannot be dropped, so they are turned off before every init.
    """
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy
    except ImportError:  # a wandb without them: nothing to stop
        return
    opentelemetry_proxy.disable()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the information as text
    return value


class RunLogger:
    """Writes ``metrics.jsonl`` and mirrors it to a W&B run.

    Args:
        run_dir: the job's folder (Hydra's output dir).
        cfg: the logger config.
        config: the resolved run config (a plain dict), stored in W&B.
        name: W&B run name, ``{algo}-{env}-s{seed}``.
        group: W&B group: the sweep folder's name (a single run: its own name).
        run_id: the W&B run id of an interrupted run being resumed. Online, the W&B run
            continues (steps logged between the checkpoint and the interruption appear
            twice in its history; ``metrics.jsonl`` is exact). Offline, W&B cannot resume a
            run, so the resumed part is a new run with the same name and group, tagged
            ``resumed``.

    Attributes:
        mode: the wandb mode the run uses (``online`` may have become ``offline``).
        offline_reason: why a run meant to be online logs offline, in one sentence (the
            server unreachable, or its init failed); None otherwise. For ``summary.json``.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: LoggerConfig,
        config: dict[str, Any],
        name: str,
        group: str,
        run_id: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.mode = resolve_wandb_mode(cfg)
        # why a run meant to be online logs offline (None: it is not, or was never meant to be)
        self.offline_reason: str | None = None
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in finish()
        self.wandb_run: Any = None
        if self.mode != "disabled":
            try:
                self.wandb_run = self._init_wandb(cfg, config, name, group, run_id)
            except BaseException:
                self._metrics.close()
                raise

    def _init_wandb(self, cfg: LoggerConfig, config: dict[str, Any], name: str, group: str, run_id: str | None) -> Any:
        import wandb

        if wandb.run is not None:  # left open by a crashed job in this (reused) process
            log.warning("finishing a W&B run left open by an earlier job: %s", wandb.run.name)
            wandb.run.finish(exit_code=1)
        _no_wandb_analytics()
        if self.mode == "online":
            reach = check_reachable(wandb_endpoint())
            if not reach.reachable:
                self.mode, self.offline_reason = "offline", reach.sentence()
        quiet = dict(console="off", silent=True, x_disable_stats=True)
        try:
            run = wandb.init(
                mode=self.mode,
                settings=wandb.Settings(init_timeout=ONLINE_INIT_TIMEOUT_S, **quiet),
                **self._init_kwargs(cfg, config, name, group, run_id),
            )
        except Exception as err:
            if self.mode != "online":
                raise
            # a bad key, a server that answers but stalls: keep the data, never block the job
            detail = (str(err).strip() or "no message").splitlines()[0]
            self.mode, self.offline_reason = "offline", f"W&B online init failed ({type(err).__name__}: {detail})"
            run = wandb.init(
                mode="offline", settings=wandb.Settings(**quiet), **self._init_kwargs(cfg, config, name, group, run_id)
            )
        if self.offline_reason is not None:
            where = Path(run.dir).parent
            log.warning(
                "pglab: %s; this run logs offline into %s; sync it later with: wandb sync %s",
                self.offline_reason,
                where,
                where,
            )
        run.define_metric("env_steps")
        run.define_metric("sft/step")  # the SFT stage's lines (all at env step 0) have their own axis
        run.define_metric("sft/*", step_metric="sft/step")
        run.define_metric("*", step_metric="env_steps")
        return run

    def _init_kwargs(
        self, cfg: LoggerConfig, config: dict[str, Any], name: str, group: str, run_id: str | None
    ) -> dict[str, Any]:
        """``wandb.init``'s arguments for the current mode: online a resumed run continues
        its W&B run; offline (W&B cannot resume there) it is a new run tagged ``resumed``."""
        kwargs: dict[str, Any] = dict(
            project=cfg.project,
            entity=cfg.entity,
            group=group,
            name=name,
            config=config,
            tags=list(cfg.tags),
            dir=str(self.run_dir),
            reinit="create_new",
        )
        if run_id is not None and self.mode == "online":
            kwargs.update(id=run_id, resume="allow")
        elif run_id is not None:
            kwargs["tags"] = [*kwargs["tags"], "resumed"]
        return kwargs

    @property
    def run_id(self) -> str | None:
        """The W&B run's id (kept in checkpoints, so that a resumed run continues the same W&B run)."""
        return None if self.wandb_run is None else str(self.wandb_run.id)

    @property
    def wandb_dir(self) -> Path | None:
        """The W&B run's local folder (``<run dir>/wandb/offline-run-...``), if any."""
        if self.wandb_run is None:
            return None
        return Path(self.wandb_run.dir).parent

    def log(self, env_steps: int, metrics: dict[str, float]) -> None:
        """Append one line to ``metrics.jsonl`` and log the same values to W&B."""
        row = {"env_steps": int(env_steps), **{k: _jsonable(v) for k, v in metrics.items()}}
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        if self.wandb_run is not None:
            self.wandb_run.log({"env_steps": int(env_steps), **metrics})

    def log_samples(self, env_steps: int, samples: list[dict[str, Any]]) -> None:
        """Text descriptions of evaluation episodes (sampled dialogues, maze walks).

        Appended to ``samples.jsonl`` (one line per episode, ``env_steps`` first) and
        logged to W&B as a table ``eval/samples`` (columns: env_steps, env, return,
        length, success, text).
        """
        if not samples:
            return
        with open(self.run_dir / "samples.jsonl", "a") as f:
            for sample in samples:
                f.write(json.dumps({"env_steps": int(env_steps), **sample}) + "\n")
        if self.wandb_run is not None:
            import wandb

            columns = ["env_steps", "env", "return", "length", "success", "text"]
            rows = [[int(env_steps)] + [s[c] for c in columns[1:]] for s in samples]
            self.wandb_run.log({"env_steps": int(env_steps), "eval/samples": wandb.Table(columns=columns, data=rows)})

    def log_video(self, env_steps: int, path: Path) -> None:
        """A video of evaluation episodes (already in the run folder) to W&B as ``eval/video``."""
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({"env_steps": int(env_steps), "eval/video": wandb.Video(str(path))})

    def finish(self, summary: dict[str, Any], failed: bool, preempted: bool = False) -> None:
        """Close the metrics file; put the summary in W&B and finish the run (failed: exit
        code 1). ``preempted``: the run was stopped by a signal and will resume; W&B marks
        it preempted."""
        if not self._metrics.closed:
            with contextlib.suppress(OSError):  # a full disk: the lines written so far stay
                self._metrics.close()
        if self.wandb_run is not None:
            if preempted:
                self.wandb_run.mark_preempting()
            try:
                flat = {k: v for k, v in summary.items() if isinstance(v, int | float | str | bool)}
                for k, v in (summary.get("final") or {}).items():
                    flat[f"final/{k}"] = v
                self.wandb_run.summary.update(flat)
            finally:
                self.wandb_run.finish(exit_code=1 if failed else 0)
                self.wandb_run = None


def offline_wandb_dirs(root: Path) -> list[Path]:
    """Offline W&B run folders under ``root`` (what ``wandb sync`` uploads)."""
    return sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir())
