"""A sweep job's folder name: a function of the job's overrides, not of its place in the grid.

Hydra numbers a sweep's jobs in grid order (``hydra.job.num``). A folder named by that
number changes meaning when a sweep is rerun into its folder with one more seed or
with its values in another order, and finished jobs would run again into new folders.
``hydra.sweep.subdir`` is therefore ``${pglab_job_dir:${hydra.overrides.task},${algo.name},${env.name},${seed}}``:

    <algo>-<env>-s<seed>-<8 hex digits>

the hex digits a hash of the job's overrides sorted, without those that do not change
what the run computes (:data:`pglab.run_dir.NOT_RESULT_KEYS`: logger, threads, cluster
resources, progress and checkpoint intervals), so a rerun that only changes those finds
its finished jobs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from omegaconf import OmegaConf

from pglab.run_dir import NOT_RESULT_KEYS

RESOLVER = "pglab_job_dir"
TRIALS_CSV = "trials.csv"  # hydra/sweeper=optuna_seeds: each trial's per-seed returns, in the sweep folder
HASH_DIGITS = 8


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _changes_results(override: str) -> bool:
    key = tuple(_key(override).split("."))
    return not any(key[: len(path)] == path for path in NOT_RESULT_KEYS)


def job_dir_name(overrides: Iterable[str], algo: str, env: str, seed: int | str) -> str:
    """``<algo>-<env>-s<seed>-<hash of the result-relevant overrides>`` (see the module docstring)."""
    relevant = sorted(o for o in map(str, overrides) if _changes_results(o))
    digest = hashlib.sha256("\n".join(relevant).encode()).hexdigest()[:HASH_DIGITS]
    return f"{algo}-{env}-s{seed}-{digest}"


def _resolve(overrides: Iterable[str], algo: str, env: str, seed: int | str) -> str:
    return job_dir_name(list(overrides), algo, env, seed)


def register_resolver() -> None:
    """Make ``${pglab_job_dir:...}`` available to the config (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve)
