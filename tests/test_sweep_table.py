"""The end-of-sweep table's value cell: mean ± sample std, "—" where one seed has none."""

from __future__ import annotations

import json
from pathlib import Path

from pglab.report.fmt import score
from pglab.report.runs import collect_runs
from pglab.report.sweep_table import format_sweep_table


def write_summary(run_dir: Path, env: str, seed: int, final: float) -> None:
    run_dir.mkdir(parents=True)
    config = {"algo": {"name": "reinforce"}, "env": {"name": env}, "seed": seed}
    (run_dir / "summary.json").write_text(
        json.dumps({"status": "completed", "final": {"return_mean": final}, "config": config})
    )


def rows(sweep: Path) -> list[str]:
    return format_sweep_table(collect_runs(sweep)).splitlines()[2:]


def test_one_seed_has_no_sample_std_and_two_equal_seeds_have_a_std_of_zero(tmp_path: Path) -> None:
    write_summary(tmp_path / "maze-s0", "maze", 0, 0.76)
    write_summary(tmp_path / "mc-s0", "mountaincar", 0, -200.0)
    write_summary(tmp_path / "mc-s1", "mountaincar", 1, -200.0)
    write_summary(tmp_path / "cp-s0", "cartpole", 0, 10.0)
    write_summary(tmp_path / "cp-s1", "cartpole", 1, 20.0)
    assert rows(tmp_path) == [
        "| reinforce | cartpole | 15.0 ± 7.1 | 2 |  |",  # sample std (ddof 1) of 10 and 20
        "| reinforce | maze | 0.760 ± — | 1 |  |",
        "| reinforce | mountaincar | -200.0 ± 0.0 | 2 |  |",  # measured: both seeds the same
    ]


def test_a_single_seed_cell_reads_like_the_progress_lines_and_still_splits_at_the_sign(tmp_path: Path) -> None:
    write_summary(tmp_path / "maze-s0", "maze", 0, 0.76)
    cell = rows(tmp_path)[0].split(" | ")[2]
    mean, std = cell.split(" ± ")
    assert (mean, std) == (score(0.76), "—")
