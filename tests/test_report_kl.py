"""The reward-vs-KL section of the report: a sweep over ``algo.kl_coef``, checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from pglab.report import (
    load_runs,
    load_train_curves,
    main,
    reward_kl_table,
    reward_kl_trajectories,
    write_report,
)

# kl_coef -> per seed: (last train/episode_return, last train/kl); listed out of order on purpose,
# and with 2.0 and 10.0, which sort the wrong way round as text
FINALS: dict[float, dict[int, tuple[float, float]]] = {
    2.0: {0: (0.50, 0.20), 1: (0.60, 0.30)},
    0.0: {0: (0.90, 4.0), 1: (0.80, 5.0), 2: (0.85, 6.0)},
    10.0: {0: (0.30, 0.02), 1: (0.34, 0.04)},
    0.05: {0: (0.70, 1.0), 1: (0.74, 1.2), 2: (0.78, 1.4)},
}
STEPS = [1000, 2000, 3000]


def write_run(
    run_dir: Path,
    *,
    env: str,
    seed: int,
    status: str = "completed",
    kl_coef: float | None = None,
    train: list[tuple[int, float, float]] | None = None,
    final_return: float = 0.0,
    final_success: float = 0.0,
) -> None:
    """One run folder as pglab writes it: ``summary.json`` and ``metrics.jsonl``.

    ``train`` holds ``(env_steps, train/episode_return, train/kl)`` per training log line; a run
    with ``kl_coef`` also starts with SFT lines at env step 0 and logs ``train/kl``.
    """
    run_dir.mkdir(parents=True)
    algo: dict[str, object] = {"name": "reinforce", "lr": 1e-4}
    if kl_coef is not None:
        algo["kl_coef"] = kl_coef
    completed = status == "completed"
    summary = {
        "status": status,
        "error": None if completed else "NonFiniteError: loss became non-finite",
        "algo": "reinforce",
        "env": env,
        "seed": seed,
        "env_steps": STEPS[-1],
        "final": {"return_mean": final_return, "return_std": 1.0, "success_rate": final_success, "episodes": 10}
        if completed
        else None,
        "solved_at_env_steps": None,
        "solved_at_wall_s": None,
        "wall_s": 30.0,
        "sps": 100.0,
        "config": {"algo": algo, "env": {"name": env}, "seed": seed, "logger": {"mode": "disabled"}},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    lines: list[dict[str, object]] = []
    if kl_coef is not None:  # the SFT stage: at env step 0, no policy-gradient metrics
        lines += [{"env_steps": 0, "sft/step": i, "sft/loss": 2.0 - i, "sft/token_accuracy": 0.3 * i} for i in range(3)]
    lines.append({"env_steps": 0, "eval/return_mean": -1.0, "eval/success_rate": 0.0, "time/wall_s": 1.0})
    for i, (steps, reward, kl) in enumerate(train or []):
        line: dict[str, object] = {
            "env_steps": steps,
            "train/episode_return": reward,
            "train/success_rate": 0.5,
            "train/episode_length": 12.0,
            "loss/policy": 0.1,
            "time/sps": 100.0,
            "time/wall_s": 2.0 + i,
        }
        if kl_coef is not None:
            line["train/kl"] = kl
        lines.append(line)
    lines.append({"env_steps": STEPS[-1], "eval/return_mean": final_return, "eval/success_rate": final_success})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def make_kl_sweep(root: Path, with_baseline: bool = True) -> None:
    """``env=dialogue_lm algo.kl_coef=... seed=...`` plus a failed job and (optionally) cartpole
    runs that log no ``train/kl``."""
    for coef, seeds in FINALS.items():
        for seed, (reward, kl) in seeds.items():
            # the trajectory climbs to the final (reward, KL): rewards -0.2, -0.1, 0; KL x0.25, x0.5, x1
            train = [(s, reward - 0.1 * (2 - i), kl * 0.25 * 2**i) for i, s in enumerate(STEPS)]
            write_run(
                root / f"kl{coef}-s{seed}",
                env="dialogue_lm",
                seed=seed,
                kl_coef=coef,
                train=train,
                final_return=10 * reward - 1,  # eval return
                final_success=1 - kl / 10,  # eval success rate
            )
    # a failed job of the sweep: logged train/kl before failing, counts in no reward-vs-KL row
    write_run(
        root / "kl0.05-s3",
        env="dialogue_lm",
        seed=3,
        kl_coef=0.05,
        status="failed",
        train=[(1000, 99.0, 99.0)],
    )
    if with_baseline:
        for seed in range(2):
            write_run(root / f"cartpole-s{seed}", env="cartpole", seed=seed, train=[(s, 20.0, 0.0) for s in STEPS])


def _not_blank(path: Path) -> None:
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05, f"{path.name} looks blank"


def test_the_reward_kl_table_matches_hand_computed_numbers(tmp_path: Path) -> None:
    make_kl_sweep(tmp_path)
    table = reward_kl_table(load_runs([tmp_path]))
    assert list(table.columns) == [
        "env",
        "algo",
        "algo.kl_coef",
        "runs",
        "reward_mean",
        "reward_std",
        "kl_mean",
        "kl_std",
        "eval_return_mean",
        "eval_success_rate",
    ]
    assert set(table["env"]) == {"dialogue_lm"}  # cartpole logs no train/kl
    assert table["algo.kl_coef"].tolist() == ["0.0", "0.05", "2.0", "10.0"]  # by value, not as text
    assert table["runs"].tolist() == [3, 3, 2, 2]  # the failed seed 3 of kl_coef=0.05 is not counted
    # means and sample stds (ddof 1) of the last train/episode_return and train/kl, by hand
    assert table["reward_mean"].tolist() == pytest.approx([0.85, 0.74, 0.55, 0.32])
    assert table["reward_std"].tolist() == pytest.approx([0.05, 0.04, math.sqrt(0.005), math.sqrt(0.0008)])
    assert table["kl_mean"].tolist() == pytest.approx([5.0, 1.2, 0.25, 0.03])
    assert table["kl_std"].tolist() == pytest.approx([1.0, 0.2, math.sqrt(0.005), math.sqrt(0.0002)])
    # final evaluation from summary.json: return = 10 * reward - 1, success = 1 - KL / 10, mean over seeds
    assert table["eval_return_mean"].tolist() == pytest.approx([7.5, 6.4, 4.5, 2.2])
    assert table["eval_success_rate"].tolist() == pytest.approx([0.5, 0.88, 0.975, 0.997])


def test_the_report_writes_the_section_table_files_and_plot(tmp_path: Path) -> None:
    sweep, out = tmp_path / "sweep", tmp_path / "report"
    make_kl_sweep(sweep)
    assert main([str(sweep), "--out", str(out)]) == 0
    csv = pd.read_csv(out / "reward_kl.csv")
    assert csv["algo.kl_coef"].tolist() == [0.0, 0.05, 2.0, 10.0]
    assert csv["kl_mean"].tolist() == pytest.approx([5.0, 1.2, 0.25, 0.03])
    assert csv["reward_mean"].tolist() == pytest.approx([0.85, 0.74, 0.55, 0.32])
    md = (out / "reward_kl.md").read_text()
    assert md.startswith(
        "| env | algo | algo.kl_coef | runs | final judge reward (mean ± sample std) |"
        " final KL, nats/reply (mean ± sample std) |"
        " final eval return | final eval success rate |"
    )
    assert "| dialogue_lm | reinforce | 0.05 | 3 | 0.740 ± 0.040 | 1.200 ± 0.200 | 6.400 | 0.880 |" in md
    rows = [line for line in md.splitlines() if line.startswith("| dialogue_lm")]
    assert [row.split(" | ")[2] for row in rows] == ["0.0", "0.05", "2.0", "10.0"]
    report_md = (out / "report.md").read_text()
    assert "## Reward vs KL" in report_md and md.strip() in report_md
    assert "![reward_vs_kl](reward_vs_kl.png)" in report_md
    tex = (out / "reward_kl.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and "\\bottomrule" in tex and "algo.kl\\_coef" in tex
    assert "0.740 $\\pm$ 0.040" in tex
    for ext in ("png", "pdf"):
        assert (out / f"reward_vs_kl.{ext}").stat().st_size > 5000
    _not_blank(out / "reward_vs_kl.png")
    # the ordinary report is still there
    assert (out / "table.md").exists() and "curves_dialogue_lm.png" in {p.name for p in out.iterdir()}

    report = write_report([sweep], tmp_path / "again", quiet=True)
    assert report.reward_kl is not None and len(report.reward_kl) == len(FINALS)
    assert {"reward_vs_kl.png", "reward_vs_kl.pdf"} <= {p.name for p in report.figures}


def test_the_plotted_lines_average_seeds_on_a_common_env_steps_grid(tmp_path: Path) -> None:
    make_kl_sweep(tmp_path)
    lines = reward_kl_trajectories(load_runs([tmp_path]), points=5)
    assert list(dict.fromkeys(lines["label"])) == ["kl_coef=0.0", "kl_coef=0.05", "kl_coef=2.0", "kl_coef=10.0"]
    line = lines[lines["label"] == "kl_coef=0.05"]
    # from the first training line (the SFT lines at step 0 are left out) to the last
    assert line["env_steps"].tolist() == [1000, 1500, 2000, 2500, 3000]
    assert line["runs"].tolist() == [3] * 5
    assert line["kl"].tolist() == pytest.approx([0.3, 0.45, 0.6, 0.9, 1.2])  # mean KL 1.2 x 0.25, 0.5, 1
    assert line["reward"].tolist() == pytest.approx([0.54, 0.59, 0.64, 0.69, 0.74])
    # the final point of each line is the table's final (KL, reward): every run ends at 3000 steps
    ends = lines.groupby("label", sort=False).tail(1)
    assert ends["kl"].tolist() == pytest.approx([5.0, 1.2, 0.25, 0.03])
    assert ends["reward"].tolist() == pytest.approx([0.85, 0.74, 0.55, 0.32])


def test_runs_logging_at_different_steps_are_interpolated_where_all_have_data(tmp_path: Path) -> None:
    write_run(tmp_path / "a", env="dialogue_lm", seed=0, kl_coef=0.1, train=[(1000, 0.1, 1.0), (3000, 0.3, 3.0)])
    write_run(tmp_path / "b", env="dialogue_lm", seed=1, kl_coef=0.1, train=[(2000, 0.4, 2.0), (4000, 0.8, 6.0)])
    lines = reward_kl_trajectories(load_runs([tmp_path]), points=3)
    # from 2000 (where b starts) to 3000 (where a ends); a is interpolated at 2000 and b at 3000
    assert lines["env_steps"].tolist() == [2000, 2500, 3000]
    assert lines["kl"].tolist() == pytest.approx([(2.0 + 2.0) / 2, (2.5 + 3.0) / 2, (3.0 + 4.0) / 2])
    assert lines["reward"].tolist() == pytest.approx([(0.2 + 0.4) / 2, (0.25 + 0.5) / 2, (0.3 + 0.6) / 2])
    assert lines["label"].tolist() == ["algo=reinforce"] * 3  # nothing varies: every key is shown
    # while the table takes each run's own last line
    table = reward_kl_table(load_runs([tmp_path]))
    assert table["kl_mean"].item() == pytest.approx(4.5) and table["reward_mean"].item() == pytest.approx(0.55)


def test_sft_and_non_finite_lines_are_left_out_of_the_train_curves(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [
        {"env_steps": 0, "sft/step": 3, "sft/loss": 0.5, "train/kl": 0.0},  # an SFT line, whatever it carries
        {"env_steps": 2000, "train/episode_return": "nan", "train/kl": 0.4},  # logging.py writes NaN as text
        {"env_steps": 1000, "train/episode_return": 0.2, "train/kl": 0.1},
        {"env_steps": 1000, "eval/return_mean": 3.0},
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curves = load_train_curves(run_dir)
    assert curves["env_steps"].tolist() == [1000, 2000]
    assert curves["kl"].tolist() == [0.1, 0.4]
    assert curves["reward"].iloc[0] == 0.2 and math.isnan(curves["reward"].iloc[1])


def test_runs_without_train_kl_get_no_reward_kl_section(tmp_path: Path) -> None:
    sweep, out = tmp_path / "sweep", tmp_path / "report"
    for seed in range(3):
        write_run(sweep / f"cartpole-s{seed}", env="cartpole", seed=seed, train=[(s, 20.0, 0.0) for s in STEPS])
    assert reward_kl_table(load_runs([sweep])).empty
    report = write_report([sweep], out, quiet=True)
    assert report.reward_kl is None
    assert not any(p.name.startswith("reward_vs_kl") for p in report.figures)
    for name in ("reward_vs_kl.png", "reward_vs_kl.pdf", "reward_kl.md", "reward_kl.csv", "reward_kl.tex"):
        assert not (out / name).exists()
    assert "Reward vs KL" not in (out / "report.md").read_text()
    assert (out / "table.md").exists() and (out / "curves_cartpole.png").exists()
