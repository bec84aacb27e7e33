"""Writing a report: tables, plots and ``report.md`` into one folder (:func:`write_report`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pglab.report.frames import load_reference, nonfinite_evals, runs_frame
from pglab.report.groups import auto_by, with_group_keys
from pglab.report.kl import format_reward_kl_latex, format_reward_kl_markdown, plot_reward_vs_kl, reward_kl_table
from pglab.report.plots import normalised_scores, plot_aggregates, plot_curves
from pglab.report.runs import DAMAGED, DUPLICATES_NOTE, RunRecord, read_runs
from pglab.report.stats import N_RESAMPLES, STD_NOTE
from pglab.report.tables import build_table, format_latex, format_markdown, return_thresholds
from pglab.report.videos import video_lines


@dataclass
class Report:
    """Everything a report holds; written by :func:`write_report`."""

    table: pd.DataFrame
    runs: pd.DataFrame
    by: list[str]
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    reward_kl: pd.DataFrame | None = None  # reward_kl_table(runs, by); None when no run logs train/kl


def _write_tables(tables: dict[str, pd.DataFrame], by: list[str], out: Path) -> dict[str, str]:
    """``table.*`` for the first metric, ``table_<metric>.*`` for the others; their markdown."""
    markdowns = {}
    for i, (metric, t) in enumerate(tables.items()):
        stem = "table" if i == 0 else f"table_{metric}"
        markdowns[metric] = format_markdown(t, by)
        (out / f"{stem}.md").write_text(markdowns[metric] + "\n")
        (out / f"{stem}.tex").write_text(format_latex(t, by, metric) + "\n")
        t.to_csv(out / f"{stem}.csv", index=False)
    return markdowns


def _write_reward_kl(report: Report, out: Path) -> str:
    """The reward-vs-KL table and plot, when runs log ``train/kl``; the table's markdown ("" if none)."""
    reward_kl = reward_kl_table(report.runs, report.by)
    if reward_kl.empty:
        return ""
    report.reward_kl = reward_kl
    markdown = format_reward_kl_markdown(reward_kl, report.by)
    (out / "reward_kl.md").write_text(markdown + "\n")
    (out / "reward_kl.tex").write_text(format_reward_kl_latex(reward_kl, report.by) + "\n")
    reward_kl.to_csv(out / "reward_kl.csv", index=False)
    report.figures += plot_reward_vs_kl(report.runs, out, report.by)
    return markdown


def _intro(runs: pd.DataFrame, roots: Sequence[Path], by: list[str]) -> list[str]:
    """The opening lines of ``report.md``: what was read and what the table holds."""
    damaged = int((runs["status"] == DAMAGED).sum())
    failed = int((runs["status"] != "completed").sum()) - damaged
    return [
        "# pglab report",
        "",
        f"Runs read: {len(runs)} ({len(runs) - failed - damaged} completed, {failed} failed, diverged or unfinished"
        f"{f', {damaged} damaged' if damaged else ''}) from {', '.join(f'`{r}`' for r in roots)}.",
        "",
        f"Final evaluation return per env and {', '.join(by)}: {STD_NOTE}; IQM (mean of the "
        f"middle 50%) with a 95% percentile-bootstrap CI ({N_RESAMPLES:,} resamples); solved = runs whose "
        "evaluation met the env's solved criterion (`env.solved`), with their mean env steps and wall seconds to it; "
        "published = the reference number shipped with pglab (source in `pglab/data/reference_results.csv`).",
        "",
    ]


def _kl_section(kl_markdown: str, by: list[str]) -> list[str]:
    """The "Reward vs KL" section of ``report.md`` (none without ``train/kl`` runs)."""
    if not kl_markdown:
        return []
    return [
        "## Reward vs KL",
        "",
        "Judge reward against KL(policy ‖ reference) per env and "
        f"{', '.join(by)}, over the completed runs that log `train/kl`: final judge reward = each run's "
        f"last `train/episode_return`, final KL = its last `train/kl` (nats per reply), {STD_NOTE}; "
        "final eval return and success rate = the final evaluation, mean over seeds. "
        "Trajectories over training: `reward_vs_kl.png` (mean over seeds on a common env-steps grid).",
        "",
        kl_markdown,
        "",
    ]


def _aggregate_section(agg: pd.DataFrame) -> list[str]:
    """The aggregate-over-envs section of ``report.md`` (none without normalisable envs)."""
    if agg.empty:
        return []
    return [
        "## Aggregate over envs (normalised: 0 = random policy, 1 = solved threshold)",
        "",
        aggregate_markdown(agg),
        "",
    ]


def aggregate_markdown(agg: pd.DataFrame) -> str:
    """The aggregate table (:func:`pglab.report.plots.aggregate_table`) as markdown."""
    lines = ["| group | envs | IQM [95% stratified bootstrap CI] |", "|---|---|---|"]
    for r in agg.to_dict("records"):
        lines.append(f"| {r['group']} | {r['envs']} | {r['iqm']:.3f} [{r['iqm_low']:.3f}, {r['iqm_high']:.3f}] |")
    return "\n".join(lines)


def _closing(report: Report) -> list[str]:
    """The notes, the failed and the damaged runs, and the plots: the end of ``report.md``."""
    lines = [f"- {note}" for note in report.notes]
    status = report.runs["status"]
    failed = report.runs[(status != "completed") & (status != DAMAGED)]
    if len(failed):
        lines += ["", "## Failed or unfinished runs", ""]
        lines += [f"- `{r['run_dir']}`: {r['status']}: {r['error']}" for r in failed.to_dict("records")]
    damaged = report.runs[status == DAMAGED]
    if len(damaged):
        lines += ["", "## Damaged run folders (not counted)", ""]
        lines += [f"- damaged run folder: {r['error']}" for r in damaged.to_dict("records")]
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in report.figures if p.suffix == ".png"]
    return lines


def _reading_notes(records: list[RunRecord], runs: pd.DataFrame) -> list[str]:
    """What reading left out: duplicate run folders, and evaluation points the curves skip
    (non-finite returns, lines without wall seconds)."""
    notes = []
    ignored = sorted(str(p) for r in records for p in r.duplicates)
    if ignored:
        plural = "" if len(ignored) == 1 else "s"
        paths = ", ".join(f"`{p}`" for p in ignored)
        notes.append(DUPLICATES_NOTE.format(n=len(ignored), s=plural, paths=paths) + ".")
    skipped = nonfinite_evals(list(runs.loc[runs["status"] == "completed", "run_dir"]))
    bad_returns = {d: n for d, (n, _) in skipped.items() if n}
    no_wall = {d: n for d, (_, n) in skipped.items() if n}
    if bad_returns:
        notes.append(
            f"Left out of the learning curves: {sum(bad_returns.values())} evaluation point(s) whose return is "
            f"missing or not finite (NaN, inf), in {', '.join(f'`{d}`' for d in sorted(bad_returns))}."
        )
    if no_wall:
        notes.append(
            f"Left out of the wall-clock curves: {sum(no_wall.values())} evaluation point(s) without "
            f"`time/wall_s`, in {', '.join(f'`{d}`' for d in sorted(no_wall))}."
        )
    return notes


def write_report(
    roots: Sequence[Path],
    out: Path,
    by: Sequence[str] = ("auto",),
    quiet: bool = False,
    metrics: Sequence[str] = ("return_mean",),
) -> Report:
    """Read the runs under ``roots``; write tables, plots and ``report.md`` into ``out``.

    One table per final evaluation metric: ``table.*`` for the first (the return by
    default), ``table_<metric>.*`` for the others (e.g. ``success_rate``). When runs log
    ``train/kl``, also the reward-vs-KL table (``reward_kl.*``, :func:`pglab.report.kl.reward_kl_table`,
    in ``Report.reward_kl``) and plot (``reward_vs_kl.png``/``.pdf``, :func:`pglab.report.kl.plot_reward_vs_kl`),
    and a "Reward vs KL" section in ``report.md``.
    """
    records = read_runs([Path(r) for r in roots])
    runs = runs_frame(records, roots)
    by = auto_by(runs) if list(by) == ["auto"] else list(by)
    reference = load_reference()
    tables = {m: build_table(runs, by, reference, metric=m) for m in metrics}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(table=tables[metrics[0]], runs=runs, by=by, notes=_reading_notes(records, runs))
    markdowns = _write_tables(tables, by, out)
    # the dashed line: the runs' own solved return, else the reference file's threshold
    thresholds = {r.env: r.mean for r in reference.itertuples() if r.kind == "threshold"} | return_thresholds(runs)
    keyed, by_cols = with_group_keys(runs, by)
    report.figures += plot_curves(keyed, by_cols, out, thresholds)
    kl_markdown = _write_reward_kl(report, out)
    scores, left_out = normalised_scores(keyed, by_cols, reference)
    figures, agg = plot_aggregates(scores, out)
    report.figures += figures
    if left_out:
        report.notes.append(
            "Left out of the aggregate plots (no random-policy score or threshold in the reference file, "
            f"or not run by every group): {', '.join(left_out)}."
        )
    lines = [*_intro(runs, roots, by), markdowns[metrics[0]], ""]
    for metric in list(metrics)[1:]:
        lines += [f"### Final `{metric}`", "", markdowns[metric], ""]
    lines += [*_kl_section(kl_markdown, by), *_aggregate_section(agg), *video_lines(keyed, by_cols, out)]
    lines += _closing(report)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print(markdowns[metrics[0]])
        if kl_markdown:
            print(f"\nReward vs KL\n\n{kl_markdown}")
        print(f"\nreport: {out / 'report.md'} (table.md, table.tex, table.csv, {len(report.figures)} plots)")
    return report
