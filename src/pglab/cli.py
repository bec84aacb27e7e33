"""The command line checked before Hydra runs it: every job's config, before any job starts.

``run.py`` calls :func:`check_command_line` with its arguments before handing them to Hydra. It
composes the config of every job the command would run — one for a single run; the
whole grid of a basic multirun sweep, ``hydra.sweeper.params`` included — and checks
each one fully (:func:`pglab.config.validate`, then :func:`pglab.preflight.preflight`: types,
unknown keys, unknown options, ranges, env ids, CUDA). The first
problem is printed as one line, ``pglab: config error: <key>=<value>: <what is allowed>``,
and the process exits with code 2 before anything is trained or written.

Hydra's own messages for these cases span several lines and do not list what is
allowed; composing with Hydra's compose API keeps Hydra the single source of truth about
what the config is, while the message is ours. Commands it cannot model (help,
``--cfg``, a non-basic sweeper, another config dir) pass straight through to Hydra.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from pglab import folder_lock
from pglab.config import Config, ConfigError, validate
from pglab.faults import EXIT_BUSY, EXIT_CONFIG, EXIT_OUTPUT, OutputError, check_output_folder
from pglab.folder_lock import FolderBusy
from pglab.preflight import preflight

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
SEED_SWEEPER = "hydra_plugins.pglab_sweepers.optuna_seeds.SeedAveragedOptunaSweeper"
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SLURM_COMMANDS = ("sbatch", "srun")  # submitting needs sbatch; submitit also insists on srun
EXHAUSTIVE_JOBS = 64  # larger sweeps are checked on a cover (see job_overrides)


def _allowed_keys(err: OmegaConfBaseException) -> str:
    obj_type = getattr(err, "object_type", None)
    if obj_type is not None and dataclasses.is_dataclass(obj_type):
        return ", ".join(f.name for f in dataclasses.fields(obj_type))
    return ""


def describe(err: BaseException, override: str | None = None) -> str:
    """One line for a Hydra/OmegaConf composition error: key, value, what is allowed."""
    if isinstance(err, MissingConfigException):
        missing = err.missing_cfg_file or ""
        group = missing.rsplit("/", 1)[0] if "/" in missing else missing
        options = ", ".join(err.options) if err.options else "(none)"
        name = missing.rsplit("/", 1)[-1]
        return f"{group}={name}: unknown option; available: {options}"
    if isinstance(err, OverrideParseException):
        return f"cannot parse override {err.override!r}: {err.message.splitlines()[0]}"
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or "config"
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        if isinstance(cause, ConfigKeyError) or "not in" in first:
            allowed = _allowed_keys(cause)
            if allowed:
                return f"{key}: unknown key; allowed keys: {allowed}"
            return f"{key}: unknown key (a free-form dict takes new keys as +{key}=...)"
        if isinstance(cause, ValidationError):
            value = ""
            if override and "=" in override:
                value = "=" + override.split("=", 1)[1]
            return f"{key}{value}: {first}"
        return f"{key}: {first}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def _check(cfg: DictConfig) -> None:
    """Validate one composed job config (the ``hydra`` node removed first)."""
    job = copy.deepcopy(cfg)
    launcher = OmegaConf.select(cfg, "hydra.launcher")
    if launcher is not None:  # e.g. SLURM resources interpolated from hardware.cluster
        try:
            OmegaConf.to_container(launcher, resolve=True)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None) or "hydra.launcher"
            raise ConfigError(f"{key}: {str(err).splitlines()[0]}") from None
    remote = "submitit" in str(OmegaConf.select(cfg, "hydra.launcher._target_") or "")
    with read_write(job), open_dict(job):
        job.pop("hydra", None)  # as Hydra does before it hands the config to the task
    checked = validate(job)
    threads, cores = checked.hardware.num_threads, checked.hardware.cluster.cpus_per_job
    if OmegaConf.select(cfg, "hydra.launcher._target_") == SLURM_LAUNCHER and threads > cores:
        raise ConfigError(
            f"hardware.num_threads={threads}: a SLURM job gets hardware.cluster.cpus_per_job={cores} core(s); "
            "use at most that many threads, or ask for more cores"
        )
    preflight(checked, check_device=not remote)  # remote jobs check their node's device, cores and memory


def _slurm_choice(cfg: DictConfig, overrides: list[str]) -> str | None:
    """How the command line chose the SLURM launcher (``hardware=slurm``), None if it did not."""
    if OmegaConf.select(cfg, "hydra.launcher._target_") != SLURM_LAUNCHER:
        return None
    choices = OmegaConf.select(cfg, "hydra.runtime.choices") or {}
    if any(o.lstrip("+~").startswith("hydra/launcher=") for o in overrides):
        return f"hydra/launcher={choices.get('hydra/launcher')}"
    return f"hardware={choices.get('hardware')}"


def check_launcher(cfg: DictConfig, overrides: list[str], multirun: bool) -> None:
    """The SLURM launcher submits the jobs of a multirun: without ``-m`` Hydra would run the job
    here, silently; with it, on a machine without SLURM, submitit fails with a traceback."""
    choice = _slurm_choice(cfg, overrides)
    if choice is None:
        return
    if not multirun:
        raise ConfigError(
            f"{choice}: SLURM runs the jobs of a multirun, and without -m this one would run here; "
            f"add -m (--multirun): python run.py -m {' '.join(overrides)}"
        )
    for command in SLURM_COMMANDS:
        if shutil.which(command) is None:
            raise ConfigError(
                f"{choice}: no SLURM here ({command} not found on PATH); run on a SLURM login node, or use hardware=cpu"
            )


def _nulled_group(overrides: list[str]) -> str | None:
    """The first override that sets a config group (not a key) to null, if any."""
    loader = GlobalHydra.instance().config_loader()
    for o in overrides:
        key, _, value = o.partition("=")
        if value in ("null", "None") and loader.get_group_options(key.lstrip("+~")):
            return o
    return None


def _compose_checked(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose one job; one-line ConfigError on failure."""
    try:
        cfg = _compose(config_name, overrides)
    except (HydraException, OmegaConfBaseException) as err:
        culprit = _culprit(err, overrides)
        raise ConfigError(describe(err, culprit)) from None
    except ValueError as err:  # Hydra's defaults list on a config group set to null (tuned=null)
        nulled = _nulled_group(overrides)
        if nulled is None:
            raise
        group = nulled.split("=", 1)[0].lstrip("+~")
        raise ConfigError(
            f"{nulled}: a config group takes one of its options; '~{group}' drops the group's default"
        ) from err
    return cfg


def _culprit(err: BaseException, overrides: list[str]) -> str | None:
    """The override that names the failing key, if any."""
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    key = getattr(cause, "full_key", None)
    if key:
        for o in overrides:
            if o.lstrip("+~").split("=", 1)[0] == key:
                return o
    return None


def job_overrides(config_name: str, overrides: list[str], multirun: bool) -> list[list[str]] | None:
    """The override lists of the jobs to check; None if they cannot be enumerated here.

    A sweep of up to ``EXHAUSTIVE_JOBS`` jobs is checked job by job. A larger grid is
    checked on a cover: every combination of the swept config *groups* (which decide the
    schema), crossed with each value of each other swept key at least once (the others at
    their first value). Value constraints are per key, so the cover finds every bad
    value at a fraction of the cost of composing every job (~0.1 s each).
    """
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    appended = [o.input_line for o in parsed if o.input_line.startswith("+sweep=")]
    if appended:
        raise ConfigError(
            f"{appended[0]}: sweep is a config group with a default (none); choose a named sweep with "
            f"{appended[0].removeprefix('+')}"
        )
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not multirun:
        if sweeps:
            raise ConfigError(
                f"{sweeps[0].input_line}: a comma-separated list is a sweep; add -m (--multirun) to run one"
            )
        named = [o for o in parsed if o.get_key_element().lstrip("+~") == "sweep"]
        if named and named[0].get_value_element_as_str() not in ("null", "None"):
            raise ConfigError(
                f"{named[0].input_line}: a named sweep runs its jobs with -m (--multirun); "
                f"run: python run.py -m {named[0].input_line.lstrip('+')}"
            )
        return [overrides]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = _compose_checked(config_name, fixed)
    sweeper = OmegaConf.select(base, "hydra.sweeper._target_")
    if sweeper == SEED_SWEEPER:
        _check_seeds(parsed, base)
    if sweeper != BASIC_SWEEPER:
        _check(base)  # at least the base config; the sweeper picks the rest
        return None
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    per_key = [
        batch_job for batch in BasicSweeper.split_arguments(parser.parse_overrides(args), None) for batch_job in batch
    ]
    if len(per_key) <= EXHAUSTIVE_JOBS:
        return per_key
    return _cover(parser.parse_overrides(args))


def _check_seeds(parsed: list[Any], base: DictConfig) -> None:
    """``hydra/sweeper=optuna_seeds`` adds ``seed=`` to every job itself, from a non-empty
    ``hydra.sweeper.seeds``: a seed on the command line or in the sweeper's params would
    clash with it (Hydra: "multiple values for seed")."""
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    keys = [o.get_key_element().lstrip("+~") for o in parsed] + [str(k) for k in params]
    seeds = list(OmegaConf.select(base, "hydra.sweeper.seeds") or [])
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"hydra.sweeper.seeds={seeds}: give distinct seeds, at least one, e.g. 'hydra.sweeper.seeds=[0,1,2]'"
        )
    if "seed" in keys:
        raise ConfigError(
            f"seed: hydra/sweeper=optuna_seeds runs every trial once per seed in hydra.sweeper.seeds "
            f"(now {seeds}); choose them there, e.g. 'hydra.sweeper.seeds=[0,1,2]', instead of seed="
        )


def _cover(parsed: list[Any]) -> list[list[str]]:
    """Group combinations × one-value-at-a-time for the other keys (see :func:`job_overrides`)."""
    loader = GlobalHydra.instance().config_loader()
    values: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
    groups = [k for k in values if loader.get_group_options(k.lstrip("+~").split("@")[0])]
    others = [k for k in values if k not in groups]
    jobs = []
    for combo in itertools.product(*(values[g] for g in groups)):
        first = [values[k][0] for k in others]
        jobs.append([*combo, *first])
        for i, key in enumerate(others):
            for alt in values[key][1:]:
                jobs.append([*combo, *first[:i], alt, *first[i + 1 :]])
    return jobs


def check_command_line(argv: Sequence[str], config_dir: Path, config_name: str = "config") -> None:
    """Check every job of this command line; print one line and exit 2 on the first problem."""
    try:
        args, _ = get_args_parser().parse_known_args(list(argv))
    except SystemExit:
        return  # let Hydra report its own usage error
    passthrough = (
        args.help
        or args.hydra_help
        or args.cfg
        or args.info
        or args.shell_completion
        or args.config_path
        or args.config_dir
        or args.experimental_rerun
    )
    if passthrough:
        return
    overrides = list(args.overrides)
    name = args.config_name or config_name
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
            multirun = bool(args.multirun) or _mode_is_multirun(name, overrides)
            jobs = job_overrides(name, overrides, multirun)
            if jobs is None:
                return
            composed = [_compose_checked(name, job) for job in jobs[:1]]
            if not multirun:  # a multirun's launcher is checked once its jobs are (SLURM's availability last)
                check_launcher(composed[0], overrides, multirun)
            for job in jobs:
                cfg = composed.pop() if composed else _compose_checked(name, job)
                try:
                    _check(cfg)
                except ConfigError as err:
                    label = " ".join(o for o in job if o not in overrides) if multirun else ""
                    raise ConfigError(f"{err}{f'  (job: {label})' if label else ''}") from None
            if multirun:
                check_launcher(cfg, overrides, multirun)
            check_output(cfg, multirun)
    except ConfigError as err:
        print(f"pglab: config error: {err}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except OutputError as err:
        print(f"pglab: output error: {err}", file=sys.stderr)
        sys.exit(EXIT_OUTPUT)
    except FolderBusy as err:
        print(f"pglab: {err}", file=sys.stderr)
        sys.exit(EXIT_BUSY)
    except OverrideParseException as err:
        print(f"pglab: config error: {describe(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        GlobalHydra.instance().clear()


def check_output(cfg: DictConfig, multirun: bool) -> None:
    """The folder the command writes into, before Hydra writes there: writable, with room
    (:func:`pglab.faults.check_output_folder`), and for a single run not in use by a live
    run (:func:`pglab.folder_lock.check_free`; each job takes the lock itself when it starts)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = Path(str(OmegaConf.select(cfg, key)))
    check_output_folder(folder, key)
    if not multirun:
        folder_lock.check_free(folder)


def _mode_is_multirun(config_name: str, overrides: list[str]) -> bool:
    """True when the config itself asks for a multirun (``hydra.mode: MULTIRUN``)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        cfg: Any = _compose(config_name, fixed)
    except (HydraException, OmegaConfBaseException, ValueError):  # reported by the full check
        return False
    return str(OmegaConf.select(cfg, "hydra.mode")) == "RunMode.MULTIRUN"


# the checkout's conf/: run.py's config dir, and the schemas of saved runs' options
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def recorded_config(recorded: dict[str, Any]) -> Config:
    """A config a run recorded (``summary.json``'s ``config``) typed again: its algo and env
    options composed from :data:`CONFIG_DIR` for their schemas, the recorded values merged
    over them (a tuned file changed since does not apply), validated.

    Raises:
        ConfigError: one line, when the recorded config does not fit these schemas.
    """
    if not CONFIG_DIR.is_dir():
        raise ConfigError(f"{CONFIG_DIR}: not found; saved runs are read in a checkout installed with pip install -e .")
    names = {}
    for group in ("algo", "env"):
        node = recorded.get(group)
        if not isinstance(node, dict) or not isinstance(node.get("name"), str):
            raise ConfigError(f"{group}: the recorded config names no {group} option")
        if not (CONFIG_DIR / group / f"{node['name']}.yaml").is_file():
            raise ConfigError(f"{group}={node['name']}: no such option in {CONFIG_DIR / group}")
        names[group] = node["name"]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            skeleton = compose("config", [f"algo={names['algo']}", f"env={names['env']}"])
        return validate(OmegaConf.merge(skeleton, recorded))  # type: ignore[arg-type]
    except (OmegaConfBaseException, HydraException, ValueError) as err:
        text = str(err).strip()
        raise ConfigError(text.splitlines()[0] if text else type(err).__name__) from None
