"""pglab's one entrypoint: a single run, or a sweep with ``-m``.

    python run.py                                   # env=mountaincar algo=reinforce
    python run.py env=cartpole seed=3 algo.lr=1e-3
    python run.py -m algo=reinforce env=mountaincar,cartpole seed=0,1

Returns the final evaluation return (what Hydra's optimisation sweepers maximise).
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from pglab.cli import CONFIG_DIR, check_command_line
from pglab.hydra_job import LAUNCHER_PID
from pglab.hydra_job import main as run_job
from pglab.signals import launcher_stops_on_signals


@hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    return run_job(cfg)


if __name__ == "__main__":
    os.environ[LAUNCHER_PID] = str(os.getpid())  # a sweep's worker processes watch this one
    with launcher_stops_on_signals():
        check_command_line(sys.argv[1:], CONFIG_DIR)  # every job's config checked before any job starts
        main()
