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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pglab.envs import env_seeds, make_vec_env, resolve_env
from pglab.evaluation import Evaluator
from pglab.run_dir import VIDEO_DIR, write_json_atomic
from pglab.saved_run import SavedRun, SavedRunError, choose_device, load_agent, open_run
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
    parser.add_argument("--device", default=None, help="where to compute (default: the run's hardware.device)")
    return parser


@dataclass
class Request:
    """What to evaluate, after the defaults from the run's config."""

    episodes: int
    seed: int
    deterministic: bool
    device: torch.device
    video: Path | None  # videos/eval_<seed>.mp4, or None


def request(saved: SavedRun, args: argparse.Namespace) -> tuple[Request, str | None]:
    """The arguments with the run's defaults, checked before any work; and a note on the device."""
    cfg = saved.cfg
    episodes = args.episodes if args.episodes is not None else cfg.eval.final_episodes
    if episodes < 1:
        raise SavedRunError(f"--episodes={episodes}: must be at least 1")
    seed = args.seed if args.seed is not None else cfg.seed
    if args.video and not renders_frames(resolve_env(cfg.env)):
        raise SavedRunError(f"--video: env={cfg.env.name} draws no frames (its episodes are text, in samples.jsonl)")
    device, note = choose_device(cfg, args.device)
    deterministic = args.deterministic if args.deterministic is not None else cfg.eval.deterministic
    video = args.run_dir / VIDEO_DIR / f"eval_{seed}.mp4" if args.video else None
    return Request(episodes, seed, deterministic, device, video), note


def reevaluate(saved: SavedRun, req: Request) -> dict[str, float]:
    """The evaluation metrics (``return_mean``, ...) of the saved agent; see the module docstring.
    A video has ``eval.video_episodes`` episodes, as the run's own."""
    cfg, device = saved.cfg, req.device
    agent, spec = load_agent(saved, device)
    n = min(cfg.eval.num_envs, req.episodes)
    eval_env = make_vec_env(spec, n, seed=req.seed, device=device, stream="eval")
    seeds = env_seeds(req.seed, n, "eval")
    try:
        result = Evaluator(agent.act, eval_env, seeds, spec.success_when, req.deterministic, 0, device)(req.episodes)
    finally:
        eval_env.close()
    if req.video is not None:
        recorder = Recorder(agent.act, spec, seeds, cfg.eval.video_episodes, req.deterministic, device)
        try:
            recorder.record(req.video)
        finally:
            recorder.close()
    return {k.removeprefix("eval/"): v for k, v in result.metrics().items()}


def main(argv: list[str] | None = None) -> int:
    """Evaluate, print, save; 0 on success, 2 with one line on stderr when the folder or an
    argument is wrong or the results cannot be written."""
    args = _parser().parse_args(argv)
    try:
        saved = open_run(args.run_dir)
        req, note = request(saved, args)
        if note:
            print(f"{PROG}: {note}: the metrics need not equal the run's to the last bit", file=sys.stderr)
        metrics = reevaluate(saved, req)
        record: dict[str, Any] = {"seed": req.seed, "episodes": req.episodes, "deterministic": req.deterministic}
        record |= {"device": req.device.type, "source": saved.source, "env_steps": saved.summary.get("env_steps")}
        out = args.run_dir / f"eval_{req.seed}.json"
        write_json_atomic(out, record | {"final": metrics})
    except SavedRunError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only run folder
        print(f"{PROG}: cannot write into {args.run_dir}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    line = f"{PROG}: {req.episodes} episodes, seed {req.seed}: return {metrics['return_mean']:.4g}; wrote {out}"
    print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
