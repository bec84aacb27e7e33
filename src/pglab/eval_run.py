"""``pglab-eval RUN_DIR``: evaluate a saved run again (also ``python -m pglab.eval_run``).

The run's agent (``policy.pt``, or the checkpoint of an interrupted run) is rebuilt from
its own recorded config, with its own normaliser statistics, and evaluated by the one
protocol (:mod:`pglab.evaluation`) on fresh evaluation envs. With the run's seed, its
number of final episodes and its deterministic setting (the defaults) the metrics are
the run's final ones exactly; ``--seed`` evaluates on other start states. The metrics are
printed and written to ``<run dir>/eval_<seed>.json``; ``--video`` also records
``<run dir>/videos/eval_<seed>.mp4``. A folder that cannot be evaluated gets one line and
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from pglab.envs import env_seeds, make_vec_env
from pglab.evaluation import Evaluator
from pglab.run_dir import VIDEO_DIR, write_json_atomic
from pglab.saved_run import SavedRun, SavedRunError, load_agent, open_run
from pglab.video import Recorder, renders_frames

PROG = "pglab-eval"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Evaluate a saved pglab run again.")
    parser.add_argument("run_dir", type=Path, help="a run folder (it holds summary.json and policy.pt)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes (default: the run's eval.final_episodes)")
    parser.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=None)
    mode.add_argument("--sample", dest="deterministic", action="store_false", help="sample actions")
    parser.add_argument("--video", action="store_true", help="also record videos/eval_<seed>.mp4")
    parser.add_argument("--device", default="cpu", help="where to compute (default: cpu)")
    return parser


def reevaluate(
    saved: SavedRun, episodes: int, seed: int, deterministic: bool, device: torch.device, video: Path | None = None
) -> dict[str, float]:
    """The evaluation metrics (``return_mean``, ...) of the saved agent; see the module docstring."""
    cfg = saved.cfg
    agent, spec = load_agent(saved, device)
    n = min(cfg.eval.num_envs, episodes)
    eval_env = make_vec_env(spec, n, seed=seed, device=device, stream="eval")
    seeds = env_seeds(seed, n, "eval")
    try:
        result = Evaluator(agent.act, eval_env, seeds, spec.success_when, deterministic, 0, device)(episodes)
    finally:
        eval_env.close()
    if video is not None:
        if not renders_frames(spec):
            raise SavedRunError(f"--video: env={cfg.env.name} draws no frames (its episodes are text)")
        recorder = Recorder(agent.act, spec, seed, seeds, 1, deterministic, device)
        try:
            recorder.record(video)
        finally:
            recorder.close()
    return {k.removeprefix("eval/"): v for k, v in result.metrics().items()}


def main(argv: list[str] | None = None) -> int:
    """Evaluate, print, save; 0 on success, 2 with one line on stderr when the folder or an
    argument is wrong."""
    args = _parser().parse_args(argv)
    try:
        saved = open_run(args.run_dir)
        cfg = saved.cfg
        episodes = args.episodes if args.episodes is not None else cfg.eval.final_episodes
        if episodes < 1:
            raise SavedRunError(f"--episodes={episodes}: must be at least 1")
        seed = args.seed if args.seed is not None else cfg.seed
        deterministic = args.deterministic if args.deterministic is not None else cfg.eval.deterministic
        video = args.run_dir / VIDEO_DIR / f"eval_{seed}.mp4" if args.video else None
        metrics = reevaluate(saved, episodes, seed, deterministic, torch.device(args.device), video)
    except SavedRunError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    record: dict[str, Any] = {"seed": seed, "episodes": episodes, "deterministic": deterministic}
    record |= {"source": saved.source, "env_steps": saved.summary.get("env_steps"), "final": metrics}
    out = args.run_dir / f"eval_{seed}.json"
    write_json_atomic(out, record)
    print(json.dumps(metrics))
    line = f"{PROG}: {episodes} episodes, seed {seed}: return {metrics['return_mean']:.4g}; wrote {out}"
    print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
