"""Reports from run folders: every number checked against an independent computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy import stats

from conftest import run_py
from pglab.report import (
    N_RESAMPLES,
    build_table,
    format_latex,
    load_reference,
    load_runs,
    main,
    stratified_iqm_ci,
    write_report,
)

FINALS = {
    ("mountaincar", "a2c"): {0: -120.0, 1: -110.0, 2: -105.0, 3: -100.0, 4: -130.0},
    ("mountaincar", "sb3_ppo"): {0: -140.0, 1: -115.0, 2: -112.0, 3: -118.0, 4: None},  # seed 4 failed
    ("mountaincar", "reinforce"): {0: -200.0, 1: -200.0, 2: -199.0, 4: -200.0},  # seed 3 missing
    ("cartpole", "a2c"): {0: 500.0, 1: 480.0, 2: 350.0},
    ("cartpole", "sb3_ppo"): {0: 500.0, 1: 500.0, 2: 500.0},
}


def make_runs(root: Path) -> None:
    """Run folders as pglab writes them: summary.json and eval lines in metrics.jsonl."""
    for (env, algo), seeds in FINALS.items():
        for seed, final in seeds.items():
            run_dir = root / f"{algo}-{env}-s{seed}"
            run_dir.mkdir(parents=True)
            threshold = -110.0 if env == "mountaincar" else 475.0
            steps = [0, 50_000, 100_000]
            returns = [-200.0 if env == "mountaincar" else 20.0, (final or 0.0) - 5.0, final or 0.0]
            summary = {
                "status": "completed" if final is not None else "failed",
                "error": None if final is not None else "NonFiniteError: loss became non-finite",
                "algo": algo,
                "env": env,
                "seed": seed,
                "final": {"return_mean": final, "success_rate": 1.0} if final is not None else None,
                "solved_at_env_steps": 50_000 + 1000 * seed if final is not None and final >= threshold else None,
                "solved_at_wall_s": 10.0 + seed if final is not None and final >= threshold else None,
                "wall_s": 60.0 + seed,
                "sps": 1000.0 * (seed + 1),
                "config": {"algo": {"name": algo, "lr": 0.001}, "env": {"name": env}, "seed": seed},
            }
            (run_dir / "summary.json").write_text(json.dumps(summary))
            lines = [
                {"env_steps": s, "eval/return_mean": r, "time/wall_s": 20.0 * i}
                for i, (s, r) in enumerate(zip(steps, returns, strict=True))
            ]
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def independent_iqm(x: list[float]) -> float:
    """The mean of the middle 50 %: sort, drop floor(n/4) values at each end."""
    x = sorted(x)
    cut = int(0.25 * len(x))
    return float(np.mean(x[cut : len(x) - cut]))


def test_every_table_value_matches_an_independent_computation(tmp_path: Path) -> None:
    make_runs(tmp_path)
    table = build_table(load_runs([tmp_path]), ["algo"])
    assert len(table) == len(FINALS)
    for (env, algo), seeds in FINALS.items():
        row = table[(table.env == env) & (table.algo == algo)].iloc[0]
        x = [v for v in seeds.values() if v is not None]
        assert row["seeds"] == len(x)
        assert row["mean"] == pytest.approx(np.mean(x))
        assert row["std"] == pytest.approx(np.std(x, ddof=1))
        assert row["iqm"] == pytest.approx(independent_iqm(x))
        if len(set(x)) > 1:
            ci = stats.bootstrap(
                (np.array(x),),
                lambda s, axis: stats.trim_mean(s, 0.25, axis=axis),
                n_resamples=N_RESAMPLES,
                method="percentile",
                random_state=np.random.default_rng(0),
            ).confidence_interval
            assert (row["iqm_low"], row["iqm_high"]) == pytest.approx((ci.low, ci.high))
            assert min(x) <= row["iqm_low"] <= row["iqm"] <= row["iqm_high"] <= max(x)
        else:
            assert row["iqm_low"] == row["iqm_high"] == x[0]
        threshold = -110.0 if env == "mountaincar" else 475.0
        solved = [s for s, v in seeds.items() if v is not None and v >= threshold]
        assert row["solved"] == len(solved)
        if solved:
            assert row["solved_env_steps"] == pytest.approx(np.mean([50_000 + 1000 * s for s in solved]))
            assert row["solved_wall_s"] == pytest.approx(np.mean([10.0 + s for s in solved]))
        done = [s for s, v in seeds.items() if v is not None]
        assert row["wall_s"] == pytest.approx(np.mean([60.0 + s for s in done]))
        assert row["sps"] == pytest.approx(np.mean([1000.0 * (s + 1) for s in done]))
    zoo = table[(table.env == "mountaincar") & (table.algo == "sb3_ppo")].iloc[0]["reference"]
    assert zoo == "-110.423 ± 19.473 (1,000,000 steps)"


def test_failed_and_missing_runs_are_counted_and_shown(tmp_path: Path) -> None:
    make_runs(tmp_path)
    report = write_report([tmp_path], tmp_path / "report", quiet=True)
    table = report.table.set_index(["env", "algo"])
    assert table.loc[("mountaincar", "sb3_ppo"), "failed"] == 1
    assert table.loc[("mountaincar", "reinforce"), "missing"] == 1  # seed 3, which the other algos have
    assert table.loc[("mountaincar", "a2c"), ["failed", "missing"]].tolist() == [0, 0]
    md = (tmp_path / "report" / "table.md").read_text()
    assert "| mountaincar | sb3_ppo | -121.2 ± 12.7 |" in md and "| 4 | 1 |" in md
    assert "| mountaincar | reinforce |" in md and "| 4 |  | 1 |" in md
    report_md = (tmp_path / "report" / "report.md").read_text()
    assert "NonFiniteError: loss became non-finite" in report_md
    csv = (tmp_path / "report" / "table.csv").read_text().splitlines()
    assert csv[0].startswith("env,algo,seeds,failed,missing,mean,std,iqm,iqm_low,iqm_high")
    assert len(csv) == 1 + len(FINALS)


def test_latex_is_booktabs_with_the_best_mean_per_env_in_bold(tmp_path: Path) -> None:
    make_runs(tmp_path)
    tex = format_latex(build_table(load_runs([tmp_path]), ["algo"]), ["algo"])
    assert tex.startswith("\\begin{tabular}") and "\\toprule" in tex and tex.rstrip().endswith("\\end{tabular}")
    assert "\\bottomrule" in tex and "\\midrule" in tex
    bold = [line for line in tex.splitlines() if "\\textbf" in line]
    assert len(bold) == 2  # one per env
    assert any(line.startswith("mountaincar & a2c & \\textbf{-113.0") for line in bold)
    assert any(line.startswith("cartpole & sb3\\_ppo & \\textbf{500.0") for line in bold)


def test_the_aggregate_iqm_uses_a_stratified_bootstrap() -> None:
    rng = np.random.default_rng(1)
    tasks = [rng.normal(0.2, 0.1, 5), rng.normal(0.8, 0.1, 5), rng.normal(1.0, 0.05, 7)]
    point, low, high = stratified_iqm_ci(tasks)
    assert point == pytest.approx(independent_iqm(list(np.concatenate(tasks))))
    # an independent numpy stratified bootstrap: resample each task's runs on their own
    boot_rng = np.random.default_rng(123)
    boots = [
        independent_iqm(list(np.concatenate([t[boot_rng.integers(0, len(t), len(t))] for t in tasks])))
        for _ in range(4000)
    ]
    ref_low, ref_high = np.percentile(boots, [2.5, 97.5])
    assert low == pytest.approx(ref_low, abs=0.03) and high == pytest.approx(ref_high, abs=0.03)


def _not_blank(path: Path) -> None:
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05, f"{path.name} looks blank"


@pytest.mark.parametrize("envs", [("cartpole",), ("mountaincar", "cartpole")])
def test_plots_are_written_and_not_blank(tmp_path: Path, envs: tuple[str, ...]) -> None:
    make_runs(tmp_path / "runs")
    for run_dir in (tmp_path / "runs").iterdir():
        if run_dir.name.split("-")[1] not in envs:
            for f in run_dir.iterdir():
                f.unlink()
            run_dir.rmdir()
    report = write_report([tmp_path / "runs"], tmp_path / "report", quiet=True)
    names = {p.name for p in report.figures}
    for env in envs:
        assert {f"curves_{env}.png", f"curves_{env}.pdf"} <= names
    assert {"aggregate_iqm.png", "performance_profiles.png", "performance_profiles.pdf"} <= names
    for path in report.figures:
        assert path.stat().st_size > 5000
        if path.suffix == ".png":
            _not_blank(path)
    report_md = (tmp_path / "report" / "report.md").read_text()
    assert all(f"]({p.name})" in report_md for p in report.figures if p.suffix == ".png")


def test_grouping_by_any_config_key_and_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_runs(tmp_path)
    table = build_table(load_runs([tmp_path]), ["algo", "algo.lr"])
    assert list(table.columns[:3]) == ["env", "algo", "algo.lr"] and set(table["algo.lr"]) == {"0.001"}
    assert main([str(tmp_path), "--by", "algo.nope"]) == 2
    assert "--by algo.nope: no such key in the runs' configs" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_the_reference_file_names_a_source_for_every_number() -> None:
    ref = load_reference()
    assert ref["source"].notna().all() and (ref["source"].str.len() > 20).all()
    zoo = ref[ref.kind == "published"].set_index(["env", "algo"])
    assert zoo.loc[("mountaincar", "sb3_a2c"), ["mean", "std", "env_steps"]].tolist() == [-111.263, 24.087, 1_000_000]
    assert zoo.loc[("mountaincar_continuous", "sb3_ppo"), ["mean", "std", "env_steps"]].tolist() == [
        88.343,
        2.572,
        20_000,
    ]
    import gymnasium as gym

    for r in ref[ref.kind == "threshold"].itertuples():
        assert gym.spec(r.env_id).reward_threshold == r.mean


@pytest.mark.slow
def test_a_real_sweep_ends_with_its_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_py(
        "-m",
        "env=cartpole",
        "algo=reinforce,a2c",
        "seed=0,1",
        "total_steps=3000",
        "eval.every_steps=1000",
        "eval.final_episodes=10",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report_md = (sweep / "report" / "report.md").read_text()
    assert "| cartpole | a2c |" in report_md and "| cartpole | reinforce |" in report_md
    _not_blank(sweep / "report" / "curves_cartpole.png")
    table = (sweep / "report" / "table.csv").read_text().splitlines()
    assert len(table) == 3 and not math.isnan(float(table[1].split(",")[5]))


def test_one_table_per_metric(tmp_path: Path) -> None:
    make_runs(tmp_path)
    assert main([str(tmp_path), "--metrics", "return_mean,success_rate", "--out", str(tmp_path / "r")]) == 0
    success = (tmp_path / "r" / "table_success_rate.md").read_text()
    assert "| mountaincar | sb3_ppo | 1.000 ± 0.000 |" in success and "| 4 | 1 |" in success
    assert "### Final `success_rate`" in (tmp_path / "r" / "report.md").read_text()
    assert main([str(tmp_path), "--metrics", "nope"]) == 2


def test_no_run_is_dropped_by_a_key_some_configs_lack_or_a_lone_run(tmp_path: Path) -> None:
    make_runs(tmp_path)
    # one run gets an extra key (as algo.baseline exists only for reinforce), one env gets a single run
    run_dir = tmp_path / "reinforce-mountaincar-s0"
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["config"]["algo"]["baseline"] = "value"
    (run_dir / "summary.json").write_text(json.dumps(summary))
    lone = tmp_path / "a2c-cartpole-s0"
    for other in ("a2c-cartpole-s1", "a2c-cartpole-s2"):
        for f in (tmp_path / other).iterdir():
            f.unlink()
        (tmp_path / other).rmdir()
    report = write_report([tmp_path], tmp_path / "r", by=["algo", "algo.baseline"], quiet=True)
    table = report.table
    assert table["seeds"].sum() + table["failed"].sum() == len(list(tmp_path.glob("*/summary.json")))
    assert set(table["algo.baseline"]) == {"value", "—"}
    assert table[(table.env == "cartpole") & (table.algo == "a2c")]["seeds"].item() == 1
    assert lone.exists() and "aggregate_iqm.png" in {p.name for p in report.figures}


def test_auto_grouping_keeps_swept_settings_apart(tmp_path: Path) -> None:
    make_runs(tmp_path)
    run_dir = tmp_path / "a2c-mountaincar-s4"
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["config"]["algo"]["lr"] = 0.01  # a swept hyperparameter
    (run_dir / "summary.json").write_text(json.dumps(summary))
    report = write_report([tmp_path], tmp_path / "r", quiet=True)
    assert report.by == ["algo", "algo.lr"]
    rows = report.table[(report.table.env == "mountaincar") & (report.table.algo == "a2c")]
    assert sorted(rows["seeds"]) == [1, 4] and set(rows["algo.lr"]) == {"0.001", "0.01"}


def test_latex_escapes_and_shows_the_published_column(tmp_path: Path) -> None:
    make_runs(tmp_path)
    tex = format_latex(build_table(load_runs([tmp_path]), ["algo"]), ["algo"])
    assert "-110.423 $\\pm$ 19.473 (1,000,000 steps)" in tex
    assert "textbackslash" not in tex


def test_the_paired_difference_ci_resamples_the_pairs() -> None:
    from pglab.report.stats import paired_difference_ci

    rng = np.random.default_rng(0)
    before = rng.normal(0.0, 3.0, 400)
    after = before + 0.5 + rng.normal(0.0, 0.2, 400)  # a shift hidden by a spread 6 times larger
    diff, lo, hi = paired_difference_ci(before, after)
    assert diff == pytest.approx(float((after - before).mean())) and lo < 0.5 < hi and hi - lo < 0.1
    assert paired_difference_ci(np.zeros(5), np.ones(5)) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="paired values"):
        paired_difference_ci(np.zeros(5), np.zeros(4))
