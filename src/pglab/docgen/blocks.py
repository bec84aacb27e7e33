"""The generated blocks of the docs: each a function of the repository root that reads
committed result files under ``docs/results/`` and returns markdown.

Run tables go through the report's own functions (:func:`pglab.report.tables.build_table`,
:func:`pglab.report.kl.reward_kl_table`, ...), so the docs print what ``pglab-report``
would; every block ends with its provenance line (:func:`pglab.docgen.provenance.describe`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pglab.docgen.export import RUNS
from pglab.docgen.provenance import describe, read
from pglab.job_dir import TRIALS_CSV
from pglab.report.fmt import MEAN_STD, digits, fmt, markdown_head, markdown_row, score, steps
from pglab.report.frames import load_reference, load_runs, load_train_curves
from pglab.report.groups import with_group_keys
from pglab.report.kl import format_reward_kl_markdown, last, reward_kl_table
from pglab.report.plots import aggregate_table, normalised_scores
from pglab.report.runs import metric_lines
from pglab.report.stats import mean_std
from pglab.report.tables import build_table, format_markdown
from pglab.report.write import aggregate_markdown

RESULTS = Path("docs/results")


def result_runs(root: Path, name: str) -> pd.DataFrame:
    """The runs of result set ``name`` (``docs/results/<name>/runs``), completed ones first in no order."""
    return load_runs([root / RESULTS / name / RUNS])


def footer(root: Path, *names: str) -> str:
    """The provenance lines of the result sets a block reads."""
    return "\n\n".join(describe(read(root / RESULTS / n), f"docs/results/{n}/") for n in names)


def _done(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "completed"]


def per_seed(cell: pd.DataFrame, column: str, show: Callable[[Any], str]) -> str:
    """A cell's values of ``column`` in seed order, comma-separated ("—" for a missing one)."""
    ordered = cell.sort_values("seed")
    return ", ".join(show(v) for v in ordered[column])


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _steps_or_dash(v: Any) -> str:
    return "—" if _missing(v) else steps(float(v))


def _two(v: Any) -> str:
    return fmt(v, 2)


def _mean_pm_std(values: Any) -> str:
    """``mean ± std`` to the decimals the mean's scale needs (:func:`pglab.report.fmt.digits`)."""
    mean, std = mean_std(values)
    places = digits([mean])
    return f"{fmt(mean, places)} ± {fmt(std, places)}"


def compact_table(runs: pd.DataFrame) -> str:
    """One row per env × algo: budget, final return, IQM, success, solved, steps to solve,
    wall seconds and env steps/s (the README's table of the default sweep)."""
    table = build_table(runs, ["algo"])
    done = _done(runs)
    head = ["env", "algo", "env steps", f"final eval return ({MEAN_STD})", "IQM [95% CI]", "success rate"]
    lines = markdown_head([*head, "solved", "steps to solve", "wall s per run", "env steps/s"])
    for d in table.to_dict("records"):
        cell = done[(done["env"] == d["env"]) & (done["algo"] == d["algo"])]
        places = digits([d["mean"]])
        ci = f"{fmt(d['iqm'], places)} [{fmt(d['iqm_low'], places)}, {fmt(d['iqm_high'], places)}]"
        cells = [str(d["env"]), str(d["algo"]), steps(cell["env_steps"].mean())]
        cells += [f"{fmt(d['mean'], places)} ± {fmt(d['std'], places)}", ci, fmt(cell["final.success_rate"].mean(), 2)]
        cells += [f"{d['solved']}/{d['seeds']} ({d['criterion']})", steps(d["solved_env_steps"])]
        cells += [fmt(d["wall_s"], 0), fmt(d["sps"], 0)]
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def default_sweep(root: Path) -> str:
    """The README's table: the default sweep, REINFORCE on three envs × three seeds."""
    return compact_table(result_runs(root, "default")) + "\n\n" + footer(root, "default")


def zoo_table(root: Path) -> str:
    """The report's main table of the Zoo sweep, published numbers included."""
    return (
        format_markdown(build_table(result_runs(root, "zoo_table"), ["algo"]), ["algo"])
        + "\n\n"
        + footer(root, "zoo_table")
    )


def zoo_aggregate(root: Path) -> str:
    """The aggregate IQM over both MountainCars of normalised scores (0 random, 1 solved)."""
    runs = result_runs(root, "zoo_table")
    keyed, by_cols = with_group_keys(runs, ["algo"])
    scores, _ = normalised_scores(keyed, by_cols, load_reference())
    agg = aggregate_table(scores).sort_values("iqm", ascending=False)
    return aggregate_markdown(agg) + "\n\n" + footer(root, "zoo_table")


def seeds_table(runs: pd.DataFrame) -> str:
    """Per env × algo: each seed's final return and first solved evaluation (env steps)."""
    done = _done(runs)
    lines = markdown_head(["env", "algo", "final eval return per seed", "solved at (env steps) per seed"])
    for (env, algo), cell in done.groupby(["env", "algo"], sort=True):
        finals = per_seed(cell, "final", score)
        lines.append(markdown_row([str(env), str(algo), finals, per_seed(cell, "solved_at_env_steps", _steps_or_dash)]))
    return "\n".join(lines)


def zoo_seeds(root: Path) -> str:
    """The Zoo sweep per seed: each run's final return and when it was first solved."""
    return seeds_table(result_runs(root, "zoo_table")) + "\n\n" + footer(root, "zoo_table")


def _oracle_column(cell: pd.DataFrame) -> str:
    """The maze's optimality or the dialogue's fraction of the expert's return, mean (per seed)."""
    for column, what in (("final.optimality", "optimality"), ("final.expert_fraction", "of the expert")):
        if column in cell.columns and cell[column].notna().any():
            return f"{what} {fmt(cell[column].mean(), 2)} ({per_seed(cell, column, _two)})"
    return "—"


def maze_dialogue(root: Path) -> str:
    """Maze and dialogue: success, the oracle's measure, return, solved and when, per algo."""
    return oracle_table(result_runs(root, "maze_dialogue")) + "\n\n" + footer(root, "maze_dialogue")


def ppo_table(root: Path) -> str:
    """ppo next to sb3_ppo and a2c on CartPole, the maze and the dialogue (:func:`oracle_table`)."""
    return oracle_table(result_runs(root, "ppo_table")) + "\n\n" + footer(root, "ppo_table")


def oracle_table(runs: pd.DataFrame) -> str:
    """Per env × algo: success, the oracle's measure where the env has one, return, solved and when."""
    table = build_table(runs, ["algo"])
    done = _done(runs)
    head = ["env", "algo", "env steps", "success rate (per seed)", "optimality / of the expert's return (per seed)"]
    lines = markdown_head([*head, "final eval return", "solved", "solved at (env steps)", "env steps/s"])
    for d in table.to_dict("records"):
        cell = done[(done["env"] == d["env"]) & (done["algo"] == d["algo"])]
        success = f"{fmt(cell['final.success_rate'].mean(), 2)} ({per_seed(cell, 'final.success_rate', _two)})"
        cells = [str(d["env"]), str(d["algo"]), steps(cell["env_steps"].mean()), success, _oracle_column(cell)]
        cells += [_mean_pm_std(cell["final"]), f"{d['solved']}/{d['seeds']} ({d['criterion']})"]
        cells += [per_seed(cell, "solved_at_env_steps", _steps_or_dash), fmt(d["sps"], 0)]
        lines.append(markdown_row(cells))
    return "\n".join(lines)


# REINFORCE on the MountainCars, each row a variant: (label, result set, rows of it)
REINFORCE_VARIANTS: tuple[tuple[str, str, Callable[[pd.DataFrame], pd.Series]], ...] = (
    ("reinforce, defaults ('~tuned')", "reinforce_mc", lambda r: r["cfg.tuned_file"].isna()),
    ("reinforce, tuned", "zoo_table", lambda r: r["algo"] == "reinforce"),
    (
        "reinforce, tuned + env.shaping=energy",
        "reinforce_mc",
        lambda r: r["cfg.tuned_file"].notna() & (r["cfg.env.shaping"] == "energy"),
    ),
    ("a2c, tuned", "zoo_table", lambda r: r["algo"] == "a2c"),
    ("ppo, tuned", "zoo_table", lambda r: r["algo"] == "ppo"),
)
VARIANT = "variant"


def reinforce_mountaincar(root: Path) -> str:
    """REINFORCE with its defaults, its tuned file and its tuned file plus energy shaping,
    next to tuned A2C and PPO, on both MountainCars (the report's table, one row per variant)."""
    parts = []
    for label, name, rows in REINFORCE_VARIANTS:
        runs = result_runs(root, name)
        parts.append(runs[rows(runs)].assign(**{VARIANT: label}))
    runs = pd.concat(parts, ignore_index=True)
    order = {label: i for i, (label, _, _) in enumerate(REINFORCE_VARIANTS)}
    table = build_table(runs, [VARIANT])
    table = table.sort_values(["env", VARIANT], key=lambda c: c.map(order) if c.name == VARIANT else c)
    head = ["env", VARIANT, "seeds", f"final eval return ({MEAN_STD})", "IQM [95% CI]", "solved"]
    lines = markdown_head([*head, "env steps to solve", "wall s to solve", "wall s per run"])
    for d in table.to_dict("records"):
        places = digits(table.loc[table["env"] == d["env"], "mean"])
        ci = f"{fmt(d['iqm'], places)} [{fmt(d['iqm_low'], places)}, {fmt(d['iqm_high'], places)}]"
        cells = [str(d["env"]), str(d[VARIANT]), str(d["seeds"]), f"{fmt(d['mean'], places)} ± {fmt(d['std'], places)}"]
        cells += [ci, f"{d['solved']}/{d['seeds']} ({d['criterion']})", steps(d["solved_env_steps"])]
        cells += [fmt(d["solved_wall_s"], 0), fmt(d["wall_s"], 0)]
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n\n" + footer(root, "reinforce_mc", "zoo_table")


# the seed-averaged Optuna studies behind conf/tuned/reinforce_mountaincar*.yaml: (label, result set)
REINFORCE_STUDIES = (
    ("MountainCar-v0, true reward", "tune_reinforce_mountaincar"),
    ("MountainCar-v0, env.shaping=energy", "tune_reinforce_mountaincar_energy"),
    ("MountainCarContinuous-v0, true reward", "tune_reinforce_mountaincar_continuous"),
    ("MountainCarContinuous-v0, env.shaping=energy", "tune_reinforce_mountaincar_continuous_energy"),
)
BEST_TRIALS = 3


def read_trials(folder: Path) -> pd.DataFrame:
    """A study's ``trials.csv`` (:mod:`hydra_plugins.pglab_sweepers.optuna_seeds`), with
    ``varied``: each trial's overrides that are not the same in every trial.

    Raises:
        ValueError: the file holds no trial.
    """
    trials = pd.read_csv(folder / TRIALS_CSV)
    if trials.empty:
        raise ValueError(f"{folder / TRIALS_CSV}: no trials")
    split = trials["overrides"].str.split()
    common = set.intersection(*(set(o) for o in split))
    trials["varied"] = split.map(lambda o: " ".join(_short(x) for x in o if x not in common))
    return trials


def _short(override: str) -> str:
    """``algo.lr=0.00032217229391726457`` -> ``algo.lr=0.000322``: three significant digits."""
    key, value = override.split("=", 1)
    if "." in value or "e" in value:
        with contextlib.suppress(ValueError):
            return f"{key}={float(value):.3g}"
    return override


def reinforce_tuning(root: Path) -> str:
    """Each study's best trials by their mean over seeds 0-2: the settings that differed, each
    seed's final return and the mean."""
    lines = markdown_head(["study", "trials", "rank", "settings", "final eval return per seed", "mean"])
    for label, name in REINFORCE_STUDIES:
        trials = read_trials(root / RESULTS / name)
        seeds = [c for c in trials.columns if c.startswith("seed_")]
        best = trials.sort_values("mean", ascending=False, kind="stable").head(BEST_TRIALS)
        for rank, d in enumerate(best.to_dict("records"), start=1):
            per_seed_returns = ", ".join(score(d[c]) for c in seeds)
            first = [label, str(len(trials))] if rank == 1 else ["", ""]
            lines.append(markdown_row([*first, str(rank), f"`{d['varied']}`", per_seed_returns, score(d["mean"])]))
    return "\n".join(lines) + "\n\n" + footer(root, *(name for _, name in REINFORCE_STUDIES))


def _first_eval(run_dir: str) -> dict[str, float]:
    """The evaluation at env step 0 of a run: on ``dialogue_lm``, its SFT model's.

    Raises:
        ValueError: the run has no evaluation at step 0.
    """
    for line in metric_lines(Path(run_dir)):
        if "eval/return_mean" in line and line.get("env_steps") == 0:
            return line
    raise ValueError(f"{run_dir}: no evaluation at env step 0 (the SFT model's)")


def sft_evaluations(reinforce: pd.DataFrame) -> list[dict[str, float]]:
    """One step-0 evaluation per seed: the runs of a seed share their SFT stage, so its
    evaluations must agree (a check that the runs are the ones the table says).

    Raises:
        ValueError: two runs of one seed evaluated different SFT models.
    """
    out = []
    for seed, cell in reinforce.groupby("seed", sort=True):
        evals = [_first_eval(d) for d in cell["run_dir"]]
        if any(e["eval/return_mean"] != evals[0]["eval/return_mean"] for e in evals):
            raise ValueError(f"seed {seed}: the runs' SFT models differ ({[e['eval/return_mean'] for e in evals]})")
        out.append(evals[0])
    return out


def _lm_row(name: str, cell: pd.DataFrame) -> list[str]:
    kls = [last(load_train_curves(Path(d))["kl"]) for d in cell["run_dir"]]
    wall = f"{fmt(cell['wall_s'].min(), 0)}–{fmt(cell['wall_s'].max(), 0)}"
    finals = [_mean_pm_std(cell["final"]), _mean_pm_std(cell["final.success_rate"])]
    return [name, str(len(cell)), *finals, _mean_pm_std(kls), wall]


def lm_table(root: Path) -> str:
    """dialogue_lm: the SFT models (each run's evaluation at step 0), RLOO, group-normalised
    REINFORCE and A2C: final judge reward, success rate, KL to the SFT model, wall seconds."""
    runs = _done(pd.concat([result_runs(root, "lm_table"), result_runs(root, "lm_a2c")], ignore_index=True))
    reinforce = runs[runs["algo"] == "reinforce"]
    sft = sft_evaluations(reinforce)
    head = ["model", "seeds", f"judge reward ({MEAN_STD})", "success rate", "KL to the SFT model (nats/reply)"]
    lines = markdown_head([*head, "wall s per run (SFT + RL + evaluations)"])
    sft_cells = [_mean_pm_std([e[f"eval/{k}"] for e in sft]) for k in ("return_mean", "success_rate")]
    lines.append(markdown_row(["SFT (each seed's model after its SFT stage)", str(len(sft)), *sft_cells, "0", "—"]))
    for baseline, cell in reinforce.groupby("cfg.algo.baseline", sort=False):
        lines.append(markdown_row(_lm_row(f"reinforce, `algo.baseline={baseline}`", cell)))
    a2c = runs[runs["algo"] == "a2c"]
    if len(a2c):
        lines.append(markdown_row(_lm_row("a2c (transformer critic)", a2c)))
    ppo = _done(result_runs(root, "lm_ppo"))
    for baseline, cell in ppo.groupby("cfg.algo.baseline", sort=False):
        lines.append(markdown_row(_lm_row(f"ppo, `algo.baseline={baseline}` (PPO clip, GRPO's advantages)", cell)))
    return "\n".join(lines) + "\n\n" + footer(root, "lm_table", "lm_a2c", "lm_ppo")


# where each result set's table is (results.md's sections)
SECTIONS = {
    "default": "the-default-sweep",
    "zoo_table": "mountaincar-the-rl-baselines3-zoo-table",
    "maze_dialogue": "maze-and-dialogue",
    "ppo_table": "ppo-next-to-sb3_ppo-and-a2c",
    "reinforce_mc": "reinforce-on-mountaincar-defaults-tuned-shaped",
    "tune_reinforce_mountaincar": "reinforce-on-mountaincar-defaults-tuned-shaped",
    "tune_reinforce_mountaincar_energy": "reinforce-on-mountaincar-defaults-tuned-shaped",
    "tune_reinforce_mountaincar_continuous": "reinforce-on-mountaincar-defaults-tuned-shaped",
    "tune_reinforce_mountaincar_continuous_energy": "reinforce-on-mountaincar-defaults-tuned-shaped",
    "lm_table": "dialogue_lm-sft-rloo-and-group-normalised-reinforce",
    "lm_a2c": "dialogue_lm-sft-rloo-and-group-normalised-reinforce",
    "lm_ppo": "dialogue_lm-sft-rloo-and-group-normalised-reinforce",
    "lm_kl": "dialogue_lm-the-kl-coefficient",
    "lm_pretrained": "dialogue_text-smollm2-135m-before-and-after-rl",
    "bench_pretrained": "dialogue_text-smollm2-135m-before-and-after-rl",
    "bench_throughput": "speed-pglab-next-to-stable-baselines3",
    "bench_solve": "speed-pglab-next-to-stable-baselines3",
    "bench_lm": "language-model-tokens-per-second",
    "bench_envs": "the-batched-environments-alone",
    "bench_anchors": "speed-pglab-next-to-a-fully-jitted-jax-a2c",
    "bench_profile": "speed-pglab-next-to-a-fully-jitted-jax-a2c",
}


def commands(root: Path) -> str:
    """Every committed result set with the command that made it and when (reproducibility.md)."""
    lines = markdown_head(["result set", "command", "run"])
    for folder in sorted(p.parent for p in (root / RESULTS).glob("*/provenance.json")):
        prov = read(folder)
        section = SECTIONS.get(folder.name)
        name = f"[{folder.name}](results.md#{section})" if section else folder.name
        lines.append(markdown_row([name, f"`{prov.command}`", prov.ran]))
    return "\n".join(lines)


def lm_kl(root: Path) -> str:
    """The reward-vs-KL table of the ``kl_coef`` sweep, as the report writes it."""
    runs = result_runs(root, "lm_kl")
    by = ["algo.kl_coef"]
    return format_reward_kl_markdown(reward_kl_table(runs, by), by) + "\n\n" + footer(root, "lm_kl")
