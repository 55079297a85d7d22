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
    lock = (ROOT / "docker" / "requirements.lock").read_text().splitlines()
    for name in ("kfp", "kfp-kubernetes"):  # installed from the lock
        version = pinned(PYPROJECT["project"]["optional-dependencies"]["pipeline"], name)
        assert f"{name}=={version}" in lock, f"{name} pin differs"
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


LOCK = ROOT / "docker" / "requirements.lock"


def test_the_images_install_their_dependencies_from_the_lock() -> None:
    """docker/requirements.lock pins (==) every run-time dependency of pyproject.toml that is
    not built per image, at a version its range accepts; both images install it without
    resolving, then the package with --no-deps."""
    from packaging.requirements import Requirement

    lines = [line for line in LOCK.read_text().splitlines() if not line.startswith("#")]
    pins = {}
    for line in lines:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        pins[requirement.name] = specifier.version
    assert len(pins) == len(lines) > 50
    project = PYPROJECT["project"]
    wanted = project["dependencies"] + [
        r for extra in ("pipeline", "tracking") for r in project["optional-dependencies"][extra]
    ]
    for text in wanted:
        requirement = Requirement(text)
        if re.match(r"torch|torchvision|faiss-", requirement.name):
            continue  # per image: CPU or CUDA builds
        assert requirement.name in pins, f"{requirement.name} is not in the lock"
        assert requirement.specifier.contains(pins[requirement.name]), text
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert "pip install --no-deps -r docker/requirements.lock" in text, dockerfile.name
        assert "pip install --no-deps ." in text, dockerfile.name
        assert not re.search(r'pip install [^\n]*"[\w-]+>=', text), dockerfile.name  # no ranges
