"""Write (or check) docker/requirements.lock: the images' Python dependencies, pinned.

The lock holds every package the images need at run time (the package's dependencies with
the ``pipeline`` and ``tracking`` extras, and theirs, to the last one), each as
``name==version``, taken from the environment this runs in, which `make setup` resolved
from pyproject.toml. PyTorch, torchvision, faiss and the NVIDIA libraries are left out: each
Dockerfile installs its own build of them (CPU or CUDA) on its own line.

    python docker/lock.py            # rewrite the lock from this environment
    python docker/lock.py --check    # exit 1 when the lock differs from what it would write
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

LOCK = Path(__file__).resolve().parent / "requirements.lock"
ROOTS = ["mmm-vi-reid[pipeline,tracking]"]
# Built per image (CPU or CUDA wheels), never from this lock.
PER_IMAGE = re.compile(r"^(torch|torchvision|triton|faiss-.*|nvidia-.*|cuda-.*|mmm-vi-reid)$")
HEADER = (
    "# The images' Python dependencies, pinned (docker/lock.py writes this file; "
    "tests/pipelines/test_docker.py checks it).\n"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> dict[str, str]:
    """{name: installed version} of `roots` and everything they require, markers evaluated
    (a requirement's extras switch on the dependencies marked with them)."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(root) for root in roots]
    while pending:
        requirement = pending.pop()
        name, extras = canonical(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is required but not installed here: run make setup") from None
        found[name] = distribution.version
        for text in distribution.requires or []:
            child = Requirement(text)
            wanted = [{"extra": extra} for extra in ("", *extras)]
            if child.marker is None or any(child.marker.evaluate(env) for env in wanted):
                pending.append(child)
    return {name: version for name, version in found.items() if not PER_IMAGE.match(name)}


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    text = render(closure(ROOTS))
    if args.check:
        if not LOCK.is_file() or LOCK.read_text() != text:
            print(f"{LOCK} is out of date: run python docker/lock.py", file=sys.stderr)
            return 1
        return 0
    LOCK.write_text(text)
    print(f"wrote {LOCK} ({text.count(chr(10)) - 1} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
