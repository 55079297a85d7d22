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
    pattern = rf"^FROM python:{re.escape(python)}(\.\d+)?(-[-\w]*)?@sha256:[0-9a-f]{{64}}$"
    assert re.search(pattern, text, re.M), "Python differs"
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in include]
    assert "mmm_cli" in packages  # the `mmm` command the image runs
    for folder in (*packages, "configs"):
        assert f"COPY {folder} ./{folder}" in text, f"the image lacks {folder}/"


def test_both_images_have_faiss_cpu_at_the_environments_version() -> None:
    from importlib.metadata import version

    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert f"faiss-cpu=={version('faiss-cpu')}" in text, dockerfile.name
        assert "faiss-gpu" not in re.sub(r"(?m)^#.*$", "", text), dockerfile.name


def cuda_majors(requirement: str) -> set[int]:
    """The CUDA major versions a package name or requirement string names: ``-cuNN`` in a
    name (nvidia-cudnn-cu13, faiss-gpu-cu12), or the version of cuda-toolkit /
    cuda-bindings / cuda-runtime (``==13.0.3``, ``<14,>=13.0.3``)."""
    from packaging.requirements import Requirement

    parsed = Requirement(requirement)
    majors = {int(m) // (10 if int(m) >= 100 else 1) for m in re.findall(r"-cu(\d+)$", parsed.name)}
    if re.fullmatch(r"cuda-(toolkit|bindings|runtime|python)", parsed.name):
        lower = [s.version for s in parsed.specifier if s.operator in ("==", ">=", "~=")]
        majors |= {int(v.split(".")[0]) for v in lower}
    return majors


def test_cuda_majors_are_read_from_names_and_versions() -> None:
    assert cuda_majors("nvidia-cudnn-cu13==9.24.0.43") == {13}
    assert cuda_majors("nvidia-cublas-cu12>=12.1.3.1") == {12}
    assert cuda_majors("faiss-gpu-cu12") == {12}
    assert cuda_majors('cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"') == {13}
    assert cuda_majors("cuda-bindings<14,>=13.0.3") == {13}
    assert cuda_majors("numpy>=1.26") == set() == cuda_majors("torch==2.14.1")


@pytest.mark.network
def test_gpu_image_resolves_to_one_cuda_major_version(tmp_path: Path) -> None:
    """Resolve the GPU image's own pins (the ``pip install`` lines that do not read the lock)
    against PyPI, as `docker build` would, with ``pip install --dry-run --report``: the
    packages chosen and what each declares it requires name one CUDA major version.

    ``--no-deps``: the packages' own requirement lists are read from the report, one level
    deep, which is where the CUDA libraries are named (nvidia-*-cuNN, cuda-toolkit==NN.*).
    Needs network access to PyPI; where PyPI cannot be reached at all, the test says so and
    is skipped (it is not a pass).
    """
    import json
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen("https://pypi.org/simple/torch/", timeout=20).close()
    except (urllib.error.URLError, OSError) as exc:
        pytest.skip(f"PyPI cannot be reached from here ({exc}): the resolution was not checked")

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    text = (ROOT / "docker" / "Dockerfile.gpu").read_text()
    pins = [
        token
        for line in re.findall(r"(?m)^RUN pip install (?!--no-deps)([^\n\\]+)$", text)
        for token in line.split()
        if "==" in token
    ]
    assert {p.split("==")[0] for p in pins} == {"torch", "torchvision"}, pins
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "pip", "install", "--isolated", "--quiet", "--dry-run",
        "--ignore-installed", "--no-deps", "--only-binary=:all:", "--target", str(tmp_path / "t"),
        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
        "--index-url", "https://pypi.org/simple", "--report", str(report), *pins,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"pip could not resolve {pins} from PyPI: {done.stderr[-2000:]}"
    installs = json.loads(report.read_text())["install"]
    assert sorted(i["metadata"]["name"] for i in installs) == ["torch", "torchvision"]
    linux = default_environment() | {"platform_system": "Linux", "sys_platform": "linux"}
    linux |= {"python_version": "3.11", "platform_machine": "x86_64"}
    found: dict[str, set[int]] = {}
    for item in installs:
        for text in [item["metadata"]["name"], *item["metadata"].get("requires_dist", [])]:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(linux | {"extra": ""}):
                for major in cuda_majors(text):
                    found.setdefault(f"{item['metadata']['name']}: {text}", set()).add(major)
    majors = set().union(*found.values()) if found else set()
    assert len(majors) == 1, f"CUDA major versions in the GPU image: {found}"
    assert sum(1 for text in found if "nvidia-" in text) >= 3  # torch's CUDA build was read


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


def load_lock_module():
    """docker/lock.py, a script (docker/ is no package), loaded from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docker_lock", ROOT / "docker" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lock_script_pins_the_closure_and_checks_its_file(tmp_path: Path, monkeypatch) -> None:
    """lock.py's closure holds the package's run-time dependencies and theirs (extras
    included), never what each image builds itself; --check passes on the file it wrote and
    fails on an edited one. (Not compared with the committed lock: a fresh environment may
    resolve newer versions within pyproject's ranges, which the test above bounds.)"""
    from importlib.metadata import version

    lock = load_lock_module()
    pins = lock.closure(lock.ROOTS)
    for name in ("kfp", "kfp-kubernetes", "mlflow", "numpy", "scipy", "minio", "pyyaml"):
        assert pins[name] == version(name), name
    assert "protobuf" in pins and "sqlalchemy" in pins  # dependencies of dependencies
    assert not any(lock.PER_IMAGE.match(name) for name in pins)
    assert not {"torch", "torchvision", "faiss-cpu", "mmm-vi-reid"} & set(pins)
    text = lock.render(pins)
    lines = text.splitlines()
    names = [line.split("==")[0] for line in lines[1:]]
    assert lines[0].startswith("#") and names == sorted(pins) == sorted(names)

    monkeypatch.setattr(lock, "LOCK", tmp_path / "requirements.lock")
    assert lock.main([]) == 0 and lock.LOCK.read_text() == text
    assert lock.main(["--check"]) == 0
    lock.LOCK.write_text(text.replace(f"numpy=={pins['numpy']}", "numpy==1.0.0"))
    assert lock.main(["--check"]) == 1
