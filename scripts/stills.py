"""Still frames of runs' videos, for the docs: ``python scripts/stills.py RUN_DIR... --out DIR``.

For each run folder, the last video (``videos/<env_steps>.mp4``, the final evaluation's)
is read and one frame (``--at``, a fraction of the episode) is written to
``DIR/<env>.png``, with the run's algo, env and env steps in ``DIR/stills.json`` (what
made each picture). The docs' "Look at your agent" page shows them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import imageio.v3 as iio

from pglab.report.videos import last_video


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stills.py", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders recorded with eval.video=true")
    parser.add_argument("--out", type=Path, required=True, help="where the PNGs go")
    parser.add_argument("--at", type=float, default=0.5, help="which frame: a fraction of the video (default 0.5)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    made = {}
    for run_dir in args.runs:
        video = last_video(run_dir)
        if video is None:
            print(f"stills: {run_dir}: no video (run it with eval.video=true)", file=sys.stderr)
            return 2
        summary = json.loads((run_dir / "summary.json").read_text())
        frames = iio.imread(video, index=None)
        index = min(int(args.at * len(frames)), len(frames) - 1)
        iio.imwrite(args.out / f"{summary['env']}.png", frames[index])
        made[summary["env"]] = {
            "algo": summary["algo"], "env_steps": int(video.stem), "frame": index, "frames": len(frames),
            "final_return": summary["final"]["return_mean"],
        }  # fmt: skip
    (args.out / "stills.json").write_text(json.dumps(made, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
