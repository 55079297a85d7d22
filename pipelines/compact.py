"""Compact compiled pipelines: one definition per distinct component.

kfp's compiler writes a separate component (and executor) for every task, even when many tasks
run the same step with the same settings: a pipeline of R rounds holds R copies of each round
step, and a round defined once as a nested pipeline is copied R times as well. `compact_spec`
merges components that are identical once their own references are merged (and executors that
are identical, with their Kubernetes settings), then points every task at the one that is left.
Tasks keep their names, inputs and display names, so the run, its DAG and the KFP UI are the
same; only the file shrinks. `compile_pipeline` is kfp's compile followed by this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["compact_spec", "compile_pipeline"]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _pick(names: list[str]) -> str:
    """The name kept for a group of equal definitions: the shortest, then the first."""
    return min(names, key=lambda name: (len(name), name))


def _refs(dag: dict[str, Any], rename: dict[str, str]) -> None:
    for task in dag.get("tasks", {}).values():
        ref = task.get("componentRef", {})
        if ref.get("name") in rename:
            ref["name"] = rename[ref["name"]]


def compact_spec(pipeline: dict[str, Any], platform: dict[str, Any] | None = None) -> None:
    """Merge equal components and executors of a compiled pipeline spec, in place.

    `platform` is the kfp-kubernetes platform spec (the file's second document), whose
    per-executor settings take part in the comparison and are merged the same way.
    """
    executors = pipeline.get("deploymentSpec", {}).get("executors", {})
    k8s = (platform or {}).get("platforms", {}).get("kubernetes", {})
    k8s_executors = k8s.get("deploymentSpec", {}).get("executors", {})
    groups: dict[str, list[str]] = {}
    for label, executor in executors.items():
        groups.setdefault(_key([executor, k8s_executors.get(label)]), []).append(label)
    executor_of = {label: _pick(labels) for labels in groups.values() for label in labels}
    components = pipeline.get("components", {})
    for component in components.values():
        if component.get("executorLabel") in executor_of:
            component["executorLabel"] = executor_of[component["executorLabel"]]
    # Components: a DAG component equals another once the components its tasks use are
    # merged, so merge until nothing changes (one pass per nesting level).
    rename: dict[str, str] = {}
    while True:
        for component in components.values():
            _refs(component.get("dag", {}), rename)
        groups = {}
        for name, component in components.items():
            groups.setdefault(_key(component), []).append(name)
        merged = {n: _pick(names) for names in groups.values() for n in names if len(names) > 1}
        merged = {n: kept for n, kept in merged.items() if n != kept}
        if not merged:
            break
        for name in merged:
            del components[name]
        rename = {n: merged.get(kept, kept) for n, kept in rename.items()} | merged
    _refs(pipeline["root"].get("dag", {}), rename)
    for label in set(executor_of) - set(executor_of.values()):
        del executors[label]
        k8s_executors.pop(label, None)


def compile_pipeline(pipeline: Any, path: str | Path) -> Path:
    """Compile `pipeline` into `path` as kfp does, with `compact_spec` applied before writing
    (kfp's own writer: the same header comments, layout and checks)."""
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder as builder
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    platform = json_format.MessageToDict(pipeline.platform_spec)
    compact_spec(spec, platform)
    builder.write_pipeline_spec_to_file(
        pipeline_spec=json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec()),
        pipeline_description=pipeline.description,
        platform_spec=json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec()),
        package_path=str(path),
    )
    return Path(path)
