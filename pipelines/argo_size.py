"""Estimate the size of the Argo Workflow that the KFP backend makes from a compiled pipeline.

    python -m pipelines.argo_size pipelines/compiled/training-50x50.yaml

The KFP v2 backend turns each run's pipeline spec into one Argo Workflow object, which the API
server stores in etcd (1.5 MiB per request by default). This counts what that object holds,
following the backend's compiler (backend/src/v2/compiler/argocompiler):

* a container task becomes two DAG tasks, its driver and its executor; the driver carries the
  task's spec as a JSON string; a task that runs a nested pipeline becomes a DAG driver and a
  DAG task that runs the nested pipeline's template;
* each DAG (the root, and each nested pipeline once) becomes one template;
* from backend 2.3.0 on, component specs and container specs are stored once per distinct
  container, as workflow arguments, and the tasks refer to them; the Kubernetes settings are
  stored once per component name. Older backends inline the component and container specs in
  every driver task (``--inline``).

The per-task sizes are those of the backend's own compiled test workflows
(test_data/compiled-workflows/pipeline_in_pipeline.yaml, upstream commit 7b70c7b95f): a
container driver task is about 550 bytes besides its task spec, an executor task 360, a DAG
driver task 370, a DAG task 340, and the fixed templates (drivers, executor, entrypoint) about
10 KB. JSON inside a JSON string is escaped, which adds about a tenth. The result is an
estimate to within about 10 %, not the backend's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["estimate"]

FIXED = 10_000
CONTAINER_DRIVER, EXECUTOR, DAG_DRIVER, DAG_TASK, DAG_TEMPLATE = 550, 360, 370, 340, 400
KUBERNETES_PLACEHOLDER = 80
ESCAPED = 1.1


def _json(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), sort_keys=True))


def estimate(spec: dict[str, Any], platform: dict[str, Any] | None = None, inline: bool = False):
    """``{"bytes", "dag_tasks", "pods"}`` of the Argo Workflow for `spec` (a compiled
    pipeline's first document; `platform`, its kfp-kubernetes document)."""
    components = spec["components"]
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    k8s = (platform or {}).get("platforms", {}).get("kubernetes", {})
    k8s_executors = k8s.get("deploymentSpec", {}).get("executors", {})
    total, dag_tasks = FIXED, 0
    shared_specs: dict[str, int] = {}  # container JSON -> bytes of the stored arguments
    k8s_by_component: dict[str, int] = {}
    templates: set[str] = set()

    def dag(name: str, body: dict[str, Any]) -> None:
        nonlocal total, dag_tasks
        templates.add(name)
        total += DAG_TEMPLATE
        for task in body.get("tasks", {}).values():
            ref = task["componentRef"]["name"]
            component = components[ref]
            task_json = ESCAPED * _json(task)
            if "dag" in component:
                total += DAG_DRIVER + DAG_TASK + task_json
                total += ESCAPED * _json(component) if inline else 0
                dag_tasks += 2
                if ref not in templates:
                    dag(ref, component["dag"])
                continue
            label = component["executorLabel"]
            container = executors[label]
            total += CONTAINER_DRIVER + EXECUTOR + task_json
            dag_tasks += 2
            if inline:
                total += ESCAPED * (_json(component) + _json(container))
            else:
                key = json.dumps(container, sort_keys=True)
                shared_specs[key] = max(
                    shared_specs.get(key, 0), int(ESCAPED * (_json(component) + _json(container)))
                )
            if label in k8s_executors:
                total += KUBERNETES_PLACEHOLDER
                k8s_by_component[ref] = int(ESCAPED * _json(k8s_executors[label]))

    def pods_of(body: dict[str, Any]) -> int:
        """Pods of one run of a DAG: a driver and an executor per container task, a driver
        per nested pipeline task plus that pipeline's pods, at each call."""
        count = 0
        for task in body.get("tasks", {}).values():
            component = components[task["componentRef"]["name"]]
            count += 1 + pods_of(component["dag"]) if "dag" in component else 2
        return count

    dag("root", spec["root"]["dag"])
    total += sum(shared_specs.values()) + sum(k8s_by_component.values())
    return {"bytes": int(total), "dag_tasks": dag_tasks, "pods": pods_of(spec["root"]["dag"])}


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="compiled pipeline YAML files")
    parser.add_argument(
        "--inline", action="store_true", help="as KFP backends before 2.3.0 (no shared specs)"
    )
    args = parser.parse_args(argv)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in args.files:
        documents = list(yaml.load_all(path.read_text(), Loader=loader))
        found = estimate(documents[0], documents[1] if len(documents) > 1 else None, args.inline)
        print(
            f"{path}: {path.stat().st_size / 1024:.0f} KiB compiled -> Argo Workflow about "
            f"{found['bytes'] / 2**20:.2f} MiB ({found['dag_tasks']} DAG tasks, "
            f"{found['pods']} driver and executor pods per run)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
