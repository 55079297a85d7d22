"""`mmm run` names the failing pipeline task and the error that ended it, in one line, with
the exit code of that error's kind, instead of "Inner task failed" and a 130-line log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmm_core.data import check
from pipelines.local import failed_task
from tests.reliability.test_error_boundary import CONFIGS, one_error_line, run
from tests.reliability.test_images_up_front import corrupt

LOG = """\
08:36:24.1 - INFO - Executing task \x1b[96m'start-op'\x1b[0m
08:36:30.2 - INFO - Task \x1b[96m'start-op'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
08:36:37.8 - INFO - Executing task \x1b[96m'extract-op'\x1b[0m
    Traceback (most recent call last):
      File "x.py", line 3, in <module>
        raise ValueError("an earlier, handled error")
    ValueError: an earlier, handled error
    During handling of the above exception, another exception occurred:
    Traceback (most recent call last):
        raise DatasetError(path, f"cannot read image: {err}") from None
    mmm_core.data.manifest.DatasetError: /data/cam3/0002/0001.jpg: cannot read image: Truncated
08:37:01.8 - ERROR - Task \x1b[96m'extract-op'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m
08:37:01.9 - ERROR - Pipeline 'mmm-training' finished with status FAILURE. Inner task failed
"""


def test_the_failing_task_and_its_last_error_are_found():
    assert failed_task(LOG) == (
        "extract-op",
        "DatasetError",
        "/data/cam3/0002/0001.jpg: cannot read image: Truncated",
    )
    assert failed_task(LOG.replace("FAILURE", "SUCCESS")) is None
    quiet = "Executing task 'train-op'\nTask 'train-op' finished with status FAILURE\n"
    assert failed_task(quiet) == ("train-op", "", "no error message in its output")


@pytest.mark.slow
def test_mmm_run_on_bad_data_names_the_task(capsys, micro_dataset, micro_overrides, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(micro_dataset, data)
    victim = Path(check.test_images("sysu", data)[0])
    corrupt(victim, "truncated")
    argv = ["run", "--config", str(CONFIGS / "synthetic-tiny.yaml"), "--out", str(tmp_path / "r")]
    for item in [f"data.root={data}", *micro_overrides]:
        argv += ["--set", item]
    code, err = run(capsys, argv)
    assert code == 2  # a DatasetError: bad input
    line = one_error_line(err)
    assert line.startswith("error: pipeline task 'start-op' failed: ")
    assert str(victim) in line and "images (training and test) cannot be read" in line
    assert str(tmp_path / "r" / "pipeline.log") in err


def test_the_round_table_follows_only_the_run_that_is_going(tmp_path: Path) -> None:
    """A run folder used again keeps the earlier runs under its pipeline root: their history
    rows are not printed as this run's."""
    import json

    from pipelines.local import _HistoryWatcher

    def history(run: str, rounds: int) -> None:
        path = tmp_path / run / "evaluate-op" / "new_history"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"round": r, "stage": 1}) + "\n" for r in range(rounds)))

    history("mmm-training-earlier", 3)
    printed: list[dict] = []
    watcher = _HistoryWatcher(tmp_path, printed.append)
    watcher.poll()
    assert printed == []
    history("mmm-training-now", 1)
    watcher.poll()
    assert [row["round"] for row in printed] == [0]
