"""Grouping runs into table rows: the ``--by`` keys, found automatically or given."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

# config keys that never tell two settings apart (where and how a run ran, not what it computed)
_NOT_SETTINGS = (
    "cfg.seed",
    "cfg.logger.",
    "cfg.hardware.",
    "cfg.progress_every_s",
    "cfg.checkpoint_every_steps",
    "cfg.tuned_file",
)


def group_label(row: pd.Series, by: list[str]) -> str:
    """A table row's group as text: its ``by`` values, comma-separated."""
    return ", ".join(str(row[k]) for k in by)


def key_text(value: Any) -> str:
    """A group key as text: lists and numbers as written, a missing key as "—"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return str(value)


def key_tuple(key: Any) -> tuple[Any, ...]:
    """A pandas group key as a tuple (pandas gives a scalar when grouping by one column)."""
    return key if isinstance(key, tuple) else (key,)


def auto_by(runs: pd.DataFrame) -> list[str]:
    """``algo`` plus every config key whose value differs between runs of the same env and
    algo (a swept hyperparameter), so that no row ever mixes two settings."""
    keys = ["algo"]
    cfg_cols = [c for c in runs.columns if c.startswith("cfg.") and not c.startswith(_NOT_SETTINGS)]
    cfg_cols = [c for c in cfg_cols if c not in ("cfg.algo.name", "cfg.env.name")]
    as_text = runs[cfg_cols].map(key_text) if cfg_cols else runs[cfg_cols]
    grouped = as_text.groupby([runs["env"].map(key_text), runs["algo"].map(key_text)])
    for col in cfg_cols:
        if (grouped[col].nunique(dropna=False) > 1).any():
            keys.append(col.removeprefix("cfg."))
    return keys


def by_or_auto(runs: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    """``by`` as a list; :func:`auto_by` for ``None`` or ``["auto"]``."""
    return auto_by(runs) if by is None or list(by) == ["auto"] else list(by)


def with_group_keys(runs: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """``runs`` with one text column per ``--by`` key (``grp.<key>``), never NaN, so that
    grouping keeps every run (pandas drops NaN keys) and list values group too."""
    cols = resolve_by(runs, by)
    runs = runs.copy()
    names = []
    for key, col in zip(by, cols, strict=True):
        runs[f"grp.{key}"] = runs[col].map(key_text)
        names.append(f"grp.{key}")
    return runs, names


def resolve_by(runs: pd.DataFrame, by: list[str]) -> list[str]:
    """``--by`` keys as columns: ``algo``, ``seed`` or any config key (``algo.baseline``)."""
    columns = []
    for key in by:
        if key in runs.columns:
            columns.append(key)
        elif f"cfg.{key}" in runs.columns:
            columns.append(f"cfg.{key}")
        else:
            known = sorted(c.removeprefix("cfg.") for c in runs.columns if c.startswith("cfg."))
            raise ValueError(f"--by {key}: no such key in the runs' configs (e.g. {', '.join(known[:12])}, ...)")
    return columns


def order_key(value: str) -> tuple[int, float, str]:
    """Sort key for a group key's text: numbers by value (``"2.0"`` before ``"10.0"``), then text."""
    try:
        number = float(value)
    except ValueError:
        return (1, 0.0, value)
    return (1, 0.0, value) if math.isnan(number) else (0, number, value)


def legend_labels(keys: list[tuple[str, ...]], by: list[str]) -> list[str]:
    """Legend labels ``name=value`` of the keys that differ between ``keys`` (all of them if none
    differs); ``name`` is the key's last dotted part (``algo.kl_coef`` -> ``kl_coef``) unless two
    shown keys share it."""
    shown = [i for i in range(len(by)) if len({k[i] for k in keys}) > 1] or list(range(len(by)))
    short = [by[i].rsplit(".", 1)[-1] for i in shown]
    names = short if len(set(short)) == len(short) else [by[i] for i in shown]
    return [", ".join(f"{name}={k[i]}" for name, i in zip(names, shown, strict=True)) for k in keys]
