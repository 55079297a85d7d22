"""The Dockerfiles agree with pyproject.toml (no Docker engine runs here: check the text)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))


def pinned(requirements: list[str], name: str) -> str:
    for requirement in requirements:
        match = re.fullmatch(rf"{re.escape(name)}==([\w.]+)", requirement.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in pyproject.toml")


def test_there_are_gpu_and_cpu_images() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.gpu", "Dockerfile.cpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_versions_match_pyproject(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    dependencies = PYPROJECT["project"]["dependencies"]
    for name in ("torch", "torchvision"):
        assert f"{name}=={pinned(dependencies, name)}" in text, f"{name} pin differs"
    for name in ("kfp", "kfp-kubernetes"):
        version = pinned(PYPROJECT["project"]["optional-dependencies"]["pipeline"], name)
        assert f"{name}=={version}" in text or "[pipeline," in text, f"{name} pin differs"
    python = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    # an exact patch tag (python:3.11.13-slim-bookworm) or the minor one
    pattern = rf"^FROM python:{re.escape(python)}(\.\d+)?(-[-\w]*)?$"
    assert re.search(pattern, text, re.M), "Python differs"
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in include]
    assert "mmm_cli" in packages  # the `mmm` command the image runs
    for folder in (*packages, "configs"):
        assert f"COPY {folder} ./{folder}" in text, f"the image lacks {folder}/"


def test_gpu_image_has_faiss_gpu() -> None:
    assert "faiss-gpu" in (ROOT / "docker" / "Dockerfile.gpu").read_text()
