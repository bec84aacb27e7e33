"""Damaged run folders: a foreign checkpoint, a damaged summary or metrics line, NaN values,
and two folders of the same run, never a traceback and never a lost good line."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from conftest import make_config
from pglab.experiment import config_dict, run
from pglab.report import main as report_main
from pglab.report.runs import collect_runs, read_runs
from pglab.report.sweep_table import format_sweep_table
from pglab.run_dir import CHECKPOINT, RunFolder, Summary

TINY = ("env=cartpole", "total_steps=3000", "log_every_steps=500", "eval.every_steps=1500", "eval.final_episodes=10")
CONFIG = {"algo": {"name": "reinforce", "lr": 0.01}, "env": {"name": "cartpole"}, "seed": 0}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def killed_run(run_dir: Path, steps: int = 2000) -> None:
    """A run folder as a kill leaves it: a ``running`` summary and a checkpoint at ``steps``."""
    folder = RunFolder(run_dir, CONFIG)
    folder.open()
    folder.write_summary(Summary(status="running", config=CONFIG))
    folder.save_checkpoint({"w": torch.zeros(2)}, steps, {"loop": {}, "wall_s": 1.0})


# ------------------------------------------------------------------ 1. a checkpoint that does not fit


def test_a_checkpoint_copied_from_another_folder_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    killed_run(tmp_path / "a")
    killed_run(tmp_path / "b", steps=1000)  # the same config, another run
    (tmp_path / "b" / CHECKPOINT).write_bytes((tmp_path / "a" / CHECKPOINT).read_bytes())
    assert RunFolder(tmp_path / "a", CONFIG).resumable() is not None, "its own folder resumes it"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pglab"):
        opened = RunFolder(tmp_path / "b", CONFIG).open()
    assert opened.checkpoint is None and opened.completed is None
    [line] = warnings_of(caplog)
    assert "checkpoint.pt does not fit this folder: it belongs to run" in line and "earlier-1" in line
    assert sorted(p.name for p in (tmp_path / "b" / "earlier-1").iterdir()) == [CHECKPOINT, "summary.json"]
    assert not (tmp_path / "b" / CHECKPOINT).exists()


def test_a_checkpoint_in_a_folder_without_summary_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    killed_run(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / CHECKPOINT).write_bytes((tmp_path / "a" / CHECKPOINT).read_bytes())
    with caplog.at_level(logging.WARNING, logger="pglab"):
        assert RunFolder(tmp_path / "b", CONFIG).open().checkpoint is None
    [line] = warnings_of(caplog)
    assert "there is no summary.json, so the run it belongs to is unknown" in line
    assert [p.name for p in (tmp_path / "b" / "earlier-1").iterdir()] == [CHECKPOINT]


def test_set_aside_checkpoint_moves_the_run_aside_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    killed_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"env_steps": 0}\n')
    folder = RunFolder(tmp_path, CONFIG)
    assert folder.open().checkpoint is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pglab"):
        dest = folder.set_aside_checkpoint("its agent state does not load (size mismatch)")
    assert dest == tmp_path / "earlier-1"
    assert sorted(p.name for p in dest.iterdir()) == [CHECKPOINT, "metrics.jsonl", "summary.json"]
    assert warnings_of(caplog) == [
        f"{tmp_path}: checkpoint.pt does not fit this folder: its agent state does not load (size mismatch); "
        f"starting afresh, the earlier files were moved to {dest}"
    ]
    assert RunFolder(tmp_path, CONFIG).open().checkpoint is None
    with pytest.raises(FileNotFoundError):
        folder.set_aside_checkpoint("again")


# ------------------------------------------------------------------ 2. a damaged summary


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("[1, 2]", "not a JSON object (a list)"),
        ('"x"', "not a JSON object (a str)"),
        ("null", "not a JSON object (a NoneType)"),
        ("{not json", "cannot be read"),
        ("no final", "status completed but no final evaluation"),
    ],
)
def test_a_damaged_summary_starts_the_run_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, reason: str
) -> None:
    cfg = make_config(*TINY)
    first = run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    if damage == "no final":
        summary.pop("final")
        damage = json.dumps(summary)
    (tmp_path / "summary.json").write_text(damage)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pglab"):
        again = run(cfg, tmp_path)
    assert again == first, "the same config and seed: the same result"
    [line] = warnings_of(caplog)
    assert line.startswith(f"{tmp_path}: summary.json is damaged (") and reason in line
    assert (tmp_path / "earlier-1" / "summary.json").read_text() == damage
    assert (tmp_path / "earlier-1" / "metrics.jsonl").read_text() == metrics
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def write_run(run_dir: Path, summary: object, lines: list[str] | None = None, mtime: float | None = None) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    (run_dir / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines or []))
    if mtime is not None:
        os.utime(run_dir / "summary.json", (mtime, mtime))


def completed(seed: int, final: object, **config: object) -> dict:
    return {"status": "completed", "final": {"return_mean": final}, "config": {**CONFIG, "seed": seed, **config}}


def test_the_report_and_the_sweep_table_list_damaged_summaries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "ok", completed(0, 100.0), ['{"env_steps": 0, "eval/return_mean": 9.0, "time/wall_s": 1}'])
    write_run(tmp_path / "list", "[1, 2]")
    write_run(tmp_path / "nofinal", {"status": "completed", "config": CONFIG})
    write_run(tmp_path / "badconfig", {"status": "failed", "config": [1]})
    table = format_sweep_table(collect_runs(tmp_path))
    assert table.splitlines()[2:] == [
        "| reinforce | cartpole | 100.0 ± — | 1 |  |",  # one seed: no sample std
        "",
        f"damaged run folder: {tmp_path}/badconfig/summary.json: no config object",
        f"damaged run folder: {tmp_path}/list/summary.json: not a JSON object (a list)",
        f"damaged run folder: {tmp_path}/nofinal/summary.json: status completed but no final evaluation",
    ]
    assert report_main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"- damaged run folder: {tmp_path}/list/summary.json: not a JSON object (a list)" in md
    assert "3 damaged" in md
    write_run(tmp_path / "only" / "x", "null")
    assert report_main([str(tmp_path / "only")]) == 2
    assert "no readable run" in capsys.readouterr().err


# ------------------------------------------------------------------ 3. a damaged metrics line


@pytest.mark.parametrize("name", ["metrics.jsonl", "samples.jsonl"])
def test_a_resume_keeps_every_good_line_and_names_the_damaged_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    killed_run(tmp_path, steps=2000)
    good = [json.dumps({"env_steps": s, "x": s}) for s in range(0, 2001, 100)]  # 21 lines up to the checkpoint
    later = [json.dumps({"env_steps": 2100})]
    lines = [*good[:3], "garbage{", *good[3:10], '["not", "an object"]', *good[10:], *later, '{"env_steps": 22']
    (tmp_path / name).write_text("".join(f"{line}\n" for line in lines))
    with caplog.at_level(logging.WARNING, logger="pglab"):
        assert RunFolder(tmp_path, CONFIG).open().checkpoint is not None
    assert (tmp_path / name).read_text() == "".join(f"{line}\n" for line in good)
    assert warnings_of(caplog) == [
        f"{tmp_path / name}: dropped 3 damaged lines (lines 4, 12, 25); kept the 21 good lines up to env step 2000"
    ]
    assert not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------ 4. non-finite values


def test_non_finite_evaluations_and_missing_wall_seconds_never_crash_the_report(tmp_path: Path) -> None:
    evals = [(0, "9.0"), (500, '"nan"'), (1000, "NaN"), (1500, "Infinity"), (2000, "50.0")]
    for seed in (0, 1):
        lines = [f'{{"env_steps": {s}, "eval/return_mean": {r}}}' for s, r in evals]  # no time/wall_s
        write_run(tmp_path / f"s{seed}", completed(seed, 50.0 + seed), lines)
    write_run(tmp_path / "nan", completed(2, float("nan")))  # json writes a bare NaN
    report = report_main([str(tmp_path), "--out", str(tmp_path / "report")])
    assert report == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Left out of the learning curves: 6 evaluation point(s) whose return is missing or not finite" in md
    assert "Left out of the wall-clock curves: 10 evaluation point(s) without `time/wall_s`" in md
    assert f"- `{tmp_path}/nan`: diverged: the final return_mean is nan (not finite)" in md
    assert "| cartpole | reinforce | 50.5 ± 0.7 |" in md and "| 2 | 1 |" in md  # the diverged run: failed


# ------------------------------------------------------------------ 5. each run counted once


def test_two_folders_of_the_same_run_count_once(tmp_path: Path) -> None:
    write_run(tmp_path / "0_old", completed(0, 10.0), mtime=1_000)
    write_run(tmp_path / "1_new", completed(0, 20.0, logger={"mode": "offline"}), mtime=2_000)  # not a result key
    write_run(tmp_path / "2_failed", {"status": "failed", "config": {**CONFIG, "seed": 0}}, mtime=3_000)
    write_run(tmp_path / "3_seed1", completed(1, 30.0), mtime=1_000)
    write_run(tmp_path / "4_lr", completed(1, 40.0, algo={"name": "reinforce", "lr": 0.1}), mtime=1_000)
    runs = read_runs([tmp_path])
    assert sorted(r.run_dir.name for r in runs) == ["1_new", "3_seed1", "4_lr"]
    [kept] = [r for r in runs if r.run_dir.name == "1_new"]
    assert sorted(p.name for p in kept.duplicates) == ["0_old", "2_failed"]
    table = format_sweep_table(collect_runs(tmp_path)).splitlines()
    assert table[-1] == (
        f"2 duplicate run folders ignored (same algo, env, config and seed): {tmp_path}/0_old, {tmp_path}/2_failed"
    )
    assert report_main([str(tmp_path), "--by", "algo", "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"2 duplicate run folders ignored (same algo, env, config and seed): `{tmp_path}/0_old`" in md
    assert "| cartpole | reinforce | 30.0 ± 10.0 | 30.0 [20.0, 40.0] | 3 |  |" in md  # 20, 30, 40; none failed


def test_the_run_folder_and_the_report_agree_on_the_same_config(tmp_path: Path) -> None:
    cfg = make_config(*TINY)
    config = config_dict(cfg)
    moved = {**config, "checkpoint_every_steps": 999, "hardware": {**config["hardware"], "num_threads": 3}}
    folder = RunFolder(tmp_path, config)
    folder.open()
    folder.write_summary(Summary(status="completed", config=config, final={"return_mean": 1.0}))
    assert RunFolder(tmp_path, moved).completed_run() is not None
    write_run(tmp_path / "copy", {"status": "completed", "config": moved, "final": {"return_mean": 1.0}})
    assert len(read_runs([tmp_path])) == 1
