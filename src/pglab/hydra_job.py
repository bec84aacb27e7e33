"""The Hydra task function behind ``run.py``: one job of a single run or of a sweep.

A single run exits non-zero on failure: code 2 and one line for a bad config, 1 for a
failed run. In a multirun a failed job never stops the others: it is recorded in its
``summary.json``, returns NaN, and the sweep callback (:mod:`pglab.callbacks`) reports every
failure and exits non-zero once all jobs have ended.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pglab.algos.common import NonFiniteError
from pglab.config import ConfigError, validate
from pglab.experiment import run
from pglab.run_dir import RunFolder, Summary
from pglab.run_logger import offline_wandb_dirs

log = logging.getLogger("pglab")


def main(cfg: DictConfig) -> float:
    """Validate the job's config, run it, and turn its outcome into an exit code or NaN."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    group = Path(hc.sweep.dir).name if multirun else run_dir.name
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(config, dict)
    try:
        conf = validate(cfg)
    except ConfigError as err:
        RunFolder(run_dir, config).write_summary(Summary(status="failed", config=config, error=str(err)))
        return _failed(f"config error: {err}", 2, multirun)
    try:
        final = run(conf, run_dir, config=config, group=group, progress_bar=sys.stderr.isatty() and not multirun)
    except (ConfigError, NonFiniteError) as err:
        kind = "config error" if isinstance(err, ConfigError) else "run failed"
        return _failed(f"{kind}: {err}", 2 if isinstance(err, ConfigError) else 1, multirun)
    except Exception:
        if multirun:
            log.exception("pglab: job failed (recorded in %s)", run_dir / "summary.json")
            return math.nan
        raise
    if not multirun:
        print(f"final eval return ({conf.eval.final_episodes} episodes): {final:.2f}  [{run_dir}]")
        for path in offline_wandb_dirs(run_dir):
            print(f"W&B run saved offline; sync it with:  wandb sync {path}")
    return final


def _failed(message: str, code: int, multirun: bool) -> float:
    """One line: logged in a multirun (the job returns NaN), printed and exit ``code`` otherwise."""
    if multirun:
        log.error("pglab: %s", message)
        return math.nan
    print(f"pglab: {message}", file=sys.stderr)
    sys.exit(code)
