"""``pglab-replay RUN_DIR``: watch a saved agent in the terminal (also ``python -m pglab.replay``).

A quick look, not a measurement (``pglab-eval`` measures): the saved agent plays
``--episodes`` evaluation episodes from the run's evaluation start states (``--seed``:
others) and each is printed as the env describes it — the maze as the picture of the
walk, the dialogues as transcripts — or, for envs without a text form (MountainCar,
CartPole), one line per step with the observation, the action and the reward.
``--video PATH`` writes the episodes as an mp4 instead (envs that draw frames).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from pglab.algos.common import Agent
from pglab.envs import EnvSpec, env_seeds, make_vec_env, resolve_env
from pglab.evaluation import Evaluator
from pglab.saved_run import SavedRunError, choose_device, load_agent, open_run
from pglab.video import Recorder, renders_frames

PROG = "pglab-replay"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Watch a saved pglab agent play.")
    parser.add_argument("run_dir", type=Path, help="a run folder (it holds summary.json and policy.pt)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play (default: 1)")
    parser.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed)")
    parser.add_argument("--sample", action="store_true", help="sample actions instead of the run's eval setting")
    parser.add_argument("--video", type=Path, default=None, help="write the episodes to this mp4 instead")
    parser.add_argument("--device", default=None, help="where to compute (default: the run's hardware.device)")
    return parser


def step_lines(
    agent: Agent, spec: EnvSpec, seed: int, start: int, deterministic: bool, device: torch.device
) -> Iterator[str]:
    """One episode from the start state of evaluation seed ``start``, a line per step:
    ``t``, the observation the agent saw, its action, the reward; then how it ended."""
    env = make_vec_env(spec, 1, seed=seed, device=device, stream="eval")
    try:
        obs, _ = env.reset(seed=[start])
        total, t, done, terminated = 0.0, 0, False, torch.zeros(1, dtype=torch.bool)
        with torch.inference_mode():
            while not done:
                action = agent.act(obs, deterministic)
                shown = ", ".join(f"{x:+.4f}" for x in obs[0].flatten().tolist())
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward[0])
                yield f"{t:5d}  obs [{shown}]  action {_action(action)}  reward {float(reward[0]):+.3f}"
                t += 1
                done = bool((terminated | truncated)[0])
        end = "terminated" if bool(terminated[0]) else "cut by the time limit"
        yield f"-- {end} after {t} steps, return {total:.4g}"
    finally:
        env.close()


def _action(action: torch.Tensor) -> str:
    """Env 0's action: a discrete index, or the continuous values."""
    values = action[0].flatten().tolist() if action.dim() > 1 else [action[0].item()]
    return ", ".join(f"{x:+.3f}" if isinstance(x, float) else str(x) for x in values)


def has_text(spec: EnvSpec) -> bool:
    """Whether the env describes its episodes in text (the maze's walk, the dialogues)."""
    return spec.native is not None and spec.native.supports_traces


def texts(
    agent: Agent, spec: EnvSpec, episodes: int, seed: int, deterministic: bool, device: torch.device
) -> list[str]:
    """The env's own text of ``episodes`` evaluation episodes (one per env, from their starts)."""
    env = make_vec_env(spec, episodes, seed=seed, device=device, stream="eval")
    try:
        evaluator = Evaluator(agent.act, env, env_seeds(seed, episodes, "eval"), spec.success_when, deterministic,
                              episodes, device)  # fmt: skip
        return [s["text"] for s in evaluator(episodes).samples]
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    """Play and print (or record); 0 on success, 2 with one line on stderr when the folder or
    an argument is wrong."""
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader stopped early (``| head``): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (stdout must stay open until exit)
        return 0


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.episodes < 1:
            raise SavedRunError(f"--episodes={args.episodes}: must be at least 1")
        saved = open_run(args.run_dir)
        cfg = saved.cfg
        seed = args.seed if args.seed is not None else cfg.seed
        deterministic = cfg.eval.deterministic and not args.sample
        device, _ = choose_device(cfg, args.device)
        if args.video is not None and not renders_frames(resolve_env(cfg.env)):
            raise SavedRunError(f"--video: env={cfg.env.name} draws no frames; its replay is text (drop --video)")
        agent, spec = load_agent(saved, device)
        if args.video is not None:
            return _record(agent, spec, args, seed, deterministic, device)
    except SavedRunError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    head = f"{cfg.algo.name} on {cfg.env.name}, seed {cfg.seed}, {saved.summary.get('env_steps', 0):,} env steps"
    print(f"{head} ({saved.source}); evaluation seed {seed}")
    if has_text(spec):
        for text in texts(agent, spec, args.episodes, seed, deterministic, device):
            print(f"\n{text}")
        return 0
    for k, start in enumerate(env_seeds(seed, args.episodes, "eval")):
        print(f"\nepisode {k + 1}")
        for line in step_lines(agent, spec, seed, start, deterministic, device):
            print(line)
    return 0


def _record(
    agent: Agent, spec: EnvSpec, args: argparse.Namespace, seed: int, deterministic: bool, device: torch.device
) -> int:
    """``--video``: the episodes into one file; 2 with one line when it cannot be written."""
    recorder = Recorder(agent.act, spec, env_seeds(seed, args.episodes, "eval"), args.episodes, deterministic, device)
    try:
        path, frames = recorder.record(args.video)
    except (OSError, ValueError) as err:  # an unwritable folder, a full disk, a suffix that is no video
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        print(f"{PROG}: --video {args.video}: {reason}", file=sys.stderr)
        return 2
    finally:
        recorder.close()
    print(f"{PROG}: {args.episodes} episode(s), {frames} frames: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
