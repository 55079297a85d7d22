"""Per-task start-up cost of the local pipeline runner, read from a finished `mmm run`/demo.

A task's overhead is its wall time in the runner's log (from "Executing task" to "Task ...
finished") minus its step's own time, which the step measures from its first line of work
(the ``time_*`` columns of ``metrics.jsonl``). What is left is starting a Python process,
kfp's executor, the imports the step's module needs, and writing the outputs.

Usage::

    PYTHONPATH=. .venv/bin/python -m benchmarks.task_overhead RUN_DIR [RUN_DIR ...]

``RUN_DIR`` holds ``pipeline.log`` and ``metrics.jsonl`` (``make demo`` writes both into
``runs/demo``). With several folders (e.g. the demo at two commits, run one after the other
on the same machine) it prints one table per folder and the ratio of their medians.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import sys
from pathlib import Path

# task name in the runner's log -> the step's own time in metrics.jsonl
STEP_TIMES = {
    "extract-op": "time_extract",
    "cluster-op": "time_cluster",
    "match-op": "time_match",
    "train-op": "time_train",
    "evaluate-op": "time_evaluate",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LINE = re.compile(
    r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) - INFO - "
    r"(?:Executing task '(?P<start>[\w-]+)'|Task '(?P<end>[\w-]+)' finished with status (?P<s>\w+))"
)


def task_walls(log: Path) -> list[tuple[str, float]]:
    """(task name, seconds) of every finished task of the log's last pipeline run, in the
    order they started; a repeated task's suffix is dropped (``extract-op-2`` -> ``extract-op``)."""
    open_tasks: dict[str, float] = {}
    walls: list[tuple[float, str, float]] = []
    day = 0.0
    last = -1.0
    text = _ANSI.sub("", log.read_text(errors="replace"))
    for raw in text.split("Running pipeline: 'mmm-")[-1].splitlines():
        match = _LINE.match(raw.strip())
        if not match:
            continue
        h, m, s, ms = (int(match.group(i)) for i in range(1, 5))
        now = h * 3600 + m * 60 + s + ms / 1000 + day
        if now < last:  # past midnight
            day += 86400
            now += 86400
        last = now
        if match.group("start"):
            name = match.group("start")
            if name in open_tasks:
                raise ValueError(f"{log}: task {name!r} started twice without finishing")
            open_tasks[name] = now
        else:
            name = match.group("end")
            if name not in open_tasks:
                raise ValueError(f"{log}: task {name!r} finished but never started")
            started = open_tasks.pop(name)
            walls.append((started, re.sub(r"-\d+$", "", name), now - started))
    return [(name, wall) for _, name, wall in sorted(walls)]


def overheads(run_dir: Path) -> dict[str, list[float]]:
    """{task name: [overhead seconds per round]} for the round steps of one run."""
    walls = task_walls(run_dir / "pipeline.log")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    result: dict[str, list[float]] = {}
    for name, column in STEP_TIMES.items():
        times = [wall for task, wall in walls if task == name]
        own = [row[column] for row in rows if row.get(column) is not None]
        if len(times) != len(own):
            raise ValueError(
                f"{run_dir}: {len(times)} {name} tasks in pipeline.log but {len(own)} rows "
                f"with {column} in metrics.jsonl"
            )
        result[name] = [wall - step for wall, step in zip(times, own, strict=True)]
    return result


def table(run_dir: Path) -> tuple[str, float]:
    data = overheads(run_dir)
    lines = [f"### {run_dir}", "", "| task | n | overhead median (s) | min | max |"]
    lines.append("|---|---|---|---|---|")
    everything: list[float] = []
    for name, values in data.items():
        if not values:  # (a run without that step)
            continue
        everything += values
        lines.append(
            f"| {name} | {len(values)} | {statistics.median(values):.2f} | "
            f"{min(values):.2f} | {max(values):.2f} |"
        )
    median = statistics.median(everything)
    lines.append(f"| all round tasks | {len(everything)} | {median:.2f} | "
                 f"{min(everything):.2f} | {max(everything):.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n", median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    medians = []
    for run_dir in args.run_dirs:
        try:
            text, median = table(run_dir)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(text)
        medians.append(median)
    if len(medians) > 1:
        ratios = ", ".join(f"{m / medians[0]:.2f}" for m in medians[1:])
        print(f"median overhead relative to {args.run_dirs[0]}: {ratios}")
    print(f"({datetime.datetime.now().isoformat(timespec='seconds')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
