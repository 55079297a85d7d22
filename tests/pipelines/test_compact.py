"""pipelines.compact: one definition per distinct component, the same run."""

# (no `from __future__ import annotations`: kfp reads the components' annotations as types)

import copy
from pathlib import Path

import yaml
from kfp import compiler, components, dsl, kubernetes, local
from kfp.dsl import Artifact, Input, Output

from pipelines.compact import compact_spec, compile_pipeline


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def begin(out: Output[Artifact]):
    with open(out.path, "w") as f:
        f.write("begin;")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def step(r: int, name: str, previous: Input[Artifact], out: Output[Artifact]):
    with open(previous.path) as f:
        text = f.read()
    with open(out.path, "w") as f:
        f.write(f"{text}{name}{r};")


@dsl.pipeline(name="two-steps")
def two_steps(r: int, previous: Input[Artifact]) -> Artifact:
    first = step(r=r, name="a", previous=previous).set_display_name("a")
    return step(r=r, name="b", previous=first.outputs["out"]).set_display_name("b").outputs["out"]


@dsl.pipeline(name="chain")
def chain() -> Artifact:
    out = begin().outputs["out"]
    for r in range(3):
        task = two_steps(r=r, previous=out).set_display_name(f"round {r}")
        out = task.output
    last = step(r=9, name="end", previous=out)
    kubernetes.add_node_selector(last, "pool", "big")  # the same step, other pod settings
    return last.outputs["out"]


def documents(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def test_copies_merge_and_the_dag_stays(tmp_path: Path) -> None:
    compiler.Compiler().compile(chain, str(tmp_path / "plain.yaml"))
    plain, _ = documents(tmp_path / "plain.yaml")
    compact, platform = documents(compile_pipeline(chain, tmp_path / "compact.yaml"))
    assert len(plain["components"]) == 1 + 3 + 7  # begin, 3 rounds, 6 + 1 steps
    # begin, the round, the step; the last step keeps its own (other pod settings)
    (last,) = set(compact["components"]) - {"comp-begin", "comp-step", "comp-two-steps"}
    assert len(compact["components"]) == 4 and last.startswith("comp-step-")
    label = compact["components"][last]["executorLabel"]
    assert sorted(compact["deploymentSpec"]["executors"]) == sorted(
        ["exec-begin", "exec-step", label]
    )
    assert list(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]) == [label]
    # the same tasks with the same inputs and names; only the references changed
    for key, task in plain["root"]["dag"]["tasks"].items():
        other = compact["root"]["dag"]["tasks"][key]
        assert {k: v for k, v in task.items() if k != "componentRef"} == {
            k: v for k, v in other.items() if k != "componentRef"
        }
    rounds = [
        t for t in compact["root"]["dag"]["tasks"].values() if "round" in t["taskInfo"]["name"]
    ]
    assert {t["componentRef"]["name"] for t in rounds} == {"comp-two-steps"}
    inner = compact["components"]["comp-two-steps"]["dag"]["tasks"]
    assert {t["componentRef"]["name"] for t in inner.values()} == {"comp-step"}


def test_compacting_twice_changes_nothing(tmp_path: Path) -> None:
    spec, platform = documents(compile_pipeline(chain, tmp_path / "compact.yaml"))
    again, again_platform = copy.deepcopy(spec), copy.deepcopy(platform)
    compact_spec(again, again_platform)
    assert (again, again_platform) == (spec, platform)


def test_the_compact_file_runs_like_the_pipeline(tmp_path: Path) -> None:
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    expected = Path(chain().output.path).read_text()
    loaded = components.load_component_from_file(
        str(compile_pipeline(chain, tmp_path / "compact.yaml"))
    )
    assert Path(loaded().output.path).read_text() == expected
    assert expected == "begin;a0;b0;a1;b1;a2;b2;end9;"
