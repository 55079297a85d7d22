"""benchmarks.task_overhead reads the runner's log and the steps' own times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import task_overhead

ESC = "\x1b[96m"
END = "\x1b[0m"


def write_run(folder: Path, extract_own: list[float]) -> None:
    """A log of an earlier run (ignored), then a run with two rounds of extract + cluster."""
    lines = [
        "09:00:00.000 - INFO - Running pipeline: \x1b[95m'mmm-training'\x1b[0m",
        f"09:00:00.000 - INFO - Executing task {ESC}'extract-op'{END}",
        f"09:00:09.000 - INFO - Task {ESC}'extract-op'{END} finished with status SUCCESS",
        "23:59:50.000 - INFO - Running pipeline: \x1b[95m'mmm-training'\x1b[0m",
        f"23:59:50.000 - INFO - Executing task {ESC}'extract-op'{END}",
        "    [KFP Executor 23:59:51 INFO]: a streamed line",
        f"23:59:58.500 - INFO - Task {ESC}'extract-op'{END} finished with status SUCCESS",
        f"23:59:58.600 - INFO - Executing task {ESC}'cluster-op'{END}",
        f"00:00:02.600 - INFO - Task {ESC}'cluster-op'{END} finished with status SUCCESS",
        f"00:00:03.000 - INFO - Executing task {ESC}'extract-op-2'{END}",
        f"00:00:10.000 - INFO - Task {ESC}'extract-op-2'{END} finished with status SUCCESS",
        f"00:00:10.000 - INFO - Executing task {ESC}'cluster-op-2'{END}",
        f"00:00:13.000 - INFO - Task {ESC}'cluster-op-2'{END} finished with status SUCCESS",
    ]
    (folder / "pipeline.log").write_text("\n".join(lines) + "\n")
    rows = [
        {"round": i, "time_extract": own, "time_cluster": 1.0} for i, own in enumerate(extract_own)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_overhead_is_wall_minus_the_steps_own_time(tmp_path: Path, capsys) -> None:
    write_run(tmp_path, [6.0, 5.0])
    walls = task_overhead.task_walls(tmp_path / "pipeline.log")
    assert walls == [
        ("extract-op", pytest.approx(8.5)),
        ("cluster-op", pytest.approx(4.0)),  # across midnight
        ("extract-op", pytest.approx(7.0)),
        ("cluster-op", pytest.approx(3.0)),
    ]
    values = task_overhead.overheads(tmp_path)
    assert values["extract-op"] == [pytest.approx(2.5), pytest.approx(2.0)]
    assert values["cluster-op"] == [pytest.approx(3.0), pytest.approx(2.0)]
    assert values["train-op"] == []
    assert task_overhead.main([str(tmp_path), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| all round tasks | 4 | 2.25 |" in out and "relative to" in out


def test_a_log_that_does_not_match_the_metrics_is_an_error(tmp_path: Path, capsys) -> None:
    write_run(tmp_path, [6.0, 5.0, 4.0])
    assert task_overhead.main([str(tmp_path)]) == 2
    assert "2 extract-op tasks in pipeline.log but 3 rows" in capsys.readouterr().err
