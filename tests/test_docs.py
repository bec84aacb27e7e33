"""The docs: generated numbers match the committed result files, links resolve, and the
pages speak of the project only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pglab.docgen import BLOCKS, check, stale_reports
from pglab.docgen.blocks import RESULTS, compact_table, read_trials
from pglab.docgen.export import export_sweep, export_trials
from pglab.docgen.pages import BLOCK, pages, render, stale
from pglab.docgen.provenance import read
from pglab.report.frames import load_runs

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
FENCE = re.compile(r"```.*?```", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", page.read_text()))}


def test_every_generated_block_is_what_the_committed_results_give() -> None:
    assert check(ROOT) == [], "run: python scripts/docs.py"


@pytest.mark.slow
def test_every_committed_report_is_what_its_runs_give(tmp_path: Path) -> None:
    """The reports next to the runs (tables, report.md; the pages' pictures come from the
    same folders) are what the report makes of the committed runs now."""
    assert stale_reports(ROOT, tmp_path) == [], "run: python scripts/docs.py"


def test_markers_that_do_not_pair_up_are_an_error(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("<!-- generated: default_sweep -->\nold\n\n<!-- generated: zoo_table -->\n<!-- end generated -->\n")
    with pytest.raises(ValueError, match="markers do not pair up"):
        stale(tmp_path, BLOCKS)
    page.write_text("A marker quoted in text, `<!-- generated: NAME -->`, is not a block.\n")
    assert stale(tmp_path, BLOCKS) == []


def test_the_pages_hold_every_block() -> None:
    used = {m["name"] for page in pages(ROOT) for m in BLOCK.finditer(page.read_text())}
    assert used == set(BLOCKS)


def test_a_result_file_changed_without_regenerating_makes_its_blocks_stale(tmp_path: Path) -> None:
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    assert check(tmp_path) == []
    summary = sorted((tmp_path / "docs/results/default/runs").glob("*cartpole*/summary.json"))[0]
    data = json.loads(summary.read_text())
    data["final"]["return_mean"] -= 50.0
    summary.write_text(json.dumps(data))
    stale = check(tmp_path)
    assert "README.md: default_sweep" in stale
    assert all(line.endswith(": default_sweep") for line in stale)


def test_an_unknown_block_name_is_an_error() -> None:
    with pytest.raises(KeyError, match="generated block 'zoo_tabel': unknown"):
        render("<!-- generated: zoo_tabel -->\n<!-- end generated -->", ROOT, BLOCKS)


def _tracked() -> set[Path] | None:
    """The files git tracks (a link to an untracked file breaks in every clone); None outside git."""
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    return {ROOT / p for p in done.stdout.split("\0") if p} if done.returncode == 0 else None


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", [p.relative_to(ROOT) for p in pages(ROOT)], ids=str)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken, tracked = [], _tracked()
    for target in _links(ROOT / page):
        path, _, anchor = target.partition("#")
        dest = ((ROOT / page).parent / path if path else ROOT / page).resolve()
        inside = dest.exists() and (dest == ROOT or ROOT in dest.parents)
        untracked = tracked is not None and dest.is_file() and dest not in tracked
        if not inside or untracked or (anchor and (dest.suffix != ".md" or anchor not in anchors(dest))):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("name", ["bench_throughput", "bench_solve", "bench_lm", "bench_envs", "bench_anchors"])
def test_a_benchmark_provenance_agrees_with_what_the_benchmark_recorded(name: str) -> None:
    provenance = read(ROOT / RESULTS / name)
    for result in sorted((ROOT / RESULTS / name).glob("*.json")):
        if result.name != "provenance.json":
            machine = json.loads(result.read_text())["machine"]
            assert (machine["torch"], machine["python"]) == (provenance.torch, provenance.python)


def _run_folder(folder: Path, seed: int, status: str, final: float | None) -> None:
    folder.mkdir(parents=True)
    summary = {
        "status": status,
        "algo": "reinforce",
        "env": "cartpole",
        "seed": seed,
        "env_steps": 1000,
        "final": None if final is None else {"return_mean": final, "success_rate": 1.0},
        "machine": {"cpu": "Test CPU, 2 cores", "torch": "9.9.9+cpu", "python": "3.99.0"},
        "config": {
            "seed": seed,
            "algo": {"name": "reinforce"},
            "env": {"name": "cartpole", "solved": {"return_mean": 475.0}},
        },
        "error": None if final is not None else "RuntimeError: boom",
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    lines = [{"env_steps": 0, "eval/return_mean": 20.0, "time/wall_s": 0.1}, {"env_steps": 500, "loss/policy": 0.3}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "policy.pt").write_bytes(b"weights")


def test_an_export_keeps_summaries_and_evaluations_and_names_the_machine_of_the_runs(tmp_path: Path) -> None:
    sweep, dest = tmp_path / "sweep", tmp_path / "docs/results/demo"
    _run_folder(sweep / "reinforce-cartpole-s0-aaaa", 0, "completed", 480.0)
    _run_folder(sweep / "reinforce-cartpole-s1-bbbb", 1, "failed", None)
    assert export_sweep([sweep], dest, "python run.py -m seed=0,1") == 2
    kept = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert kept == [
        "provenance.json",
        "runs/reinforce-cartpole-s0-aaaa/metrics.jsonl",
        "runs/reinforce-cartpole-s0-aaaa/summary.json",
        "runs/reinforce-cartpole-s1-bbbb/metrics.jsonl",
        "runs/reinforce-cartpole-s1-bbbb/summary.json",
    ]
    lines = (dest / "runs/reinforce-cartpole-s0-aaaa/metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["env_steps"] for x in lines] == [0]  # the evaluation line, not the loss line
    provenance = read(dest)
    assert (provenance.machine, provenance.torch, provenance.command) == (
        "Test CPU, 2 cores",
        "9.9.9+cpu",
        "python run.py -m seed=0,1",
    )
    table = compact_table(load_runs([dest / "runs"]))
    assert "| cartpole | reinforce | 1k | 480.0 ± — |" in table  # one completed seed: no sample std


def test_a_trials_export_keeps_the_study_and_the_block_ranks_its_trials_by_their_mean(tmp_path: Path) -> None:
    sweep, dest = tmp_path / "sweep", tmp_path / "docs/results/study"
    _run_folder(sweep / "reinforce-cartpole-s0-aaaa", 0, "completed", 480.0)
    (sweep / "trials.csv").write_text(
        "trial,overrides,seed_0,seed_1,mean\n"
        "0,algo.lr=0.00012345 env.num_envs=16 logger=none,-200.0,-120.0,-160.0\n"
        "1,algo.lr=0.003 env.num_envs=64 logger=none,-110.0,-100.0,-105.0\n"
    )
    assert export_trials(sweep, dest, "python run.py -m sweep=tune") == 2
    assert sorted(p.name for p in dest.iterdir()) == ["provenance.json", "trials.csv"]
    assert read(dest).command == "python run.py -m sweep=tune"
    trials = read_trials(dest)
    assert list(trials["varied"]) == ["algo.lr=0.000123 env.num_envs=16", "algo.lr=0.003 env.num_envs=64"]
    with pytest.raises(ValueError, match="no such file"):
        export_trials(tmp_path / "elsewhere", dest, "x")


# words about how the project was made, not about what it does
NOT_ABOUT_THE_PROJECT = re.compile(
    r"\bissues? ?#?\d+|\bsessions?\b|\bearlier attempt|\bbefore the change|\bwe aimed|"
    r"\bwas(?: not)? available\b|\.\./shared",
    re.I,
)


@pytest.mark.parametrize("page", [p.relative_to(ROOT) for p in pages(ROOT)], ids=str)
def test_the_pages_speak_of_the_project_only(page: Path) -> None:
    assert NOT_ABOUT_THE_PROJECT.findall((ROOT / page).read_text()) == []


def test_the_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    install = next(line for line in text.splitlines() if "pip install" in line and "run.py -m" in line)
    # the CPU build of torch first, in the same command, so pip never pulls a CUDA build
    assert install.index("download.pytorch.org/whl/cpu") < install.index("pip install -e")
    tests = next(line for line in text.splitlines() if "pip install" in line and "pytest" in line)
    assert tests.index("download.pytorch.org/whl/cpu") < tests.index('pip install -e ".[dev,lm]"')


QUOTED = re.compile(r"<!-- quoted: (\S+) -->\n```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_quoted_source_lines_are_still_in_their_file(page: Path) -> None:
    """A block marked ``<!-- quoted: FILE -->`` holds lines of FILE verbatim: a refactor that
    changes them makes the page stale, and this says which line."""
    stale = []
    for path, block in QUOTED.findall(page.read_text()):
        source = set((ROOT / path).read_text().splitlines())
        stale += [f"{path}: {line.strip()}" for line in block.splitlines() if line.strip() and line not in source]
    assert stale == []
