"""The training pipeline executed on this machine by ``kfp.local.SubprocessRunner`` (``mmm run``).

The same pipeline function a cluster runs, with every step as a subprocess of the current
Python environment: no Kubernetes, no Docker, no servers. Step output is kept in
``RUN/pipeline.log``; the round table is printed as rounds finish, and the history artifact is
copied to ``RUN/metrics.jsonl`` (the same keys as ``mmm train``).
"""

import contextlib
import os
import re
import sys
import threading
from pathlib import Path

from mmm_core.config import dump_config
from mmm_core.engine.lifecycle import parse_rows
from mmm_core.tracking import resolve_tracking_uri

__all__ = ["PipelineTaskError", "failed_task", "init_runner", "run_local"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAILED = re.compile(r"Task '([^']+)' finished with status FAILURE")
_EXCEPTION = re.compile(
    r"^\s*((?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit)\w*)): (.*)$"
)


class PipelineTaskError(RuntimeError):
    """A step of a local pipeline run failed: which task, and the error that ended it.

    Attributes:
        task: the task's name (e.g. ``extract-op``).
        error_type: the class name of the exception the step raised ("" when not found).
        message: that exception's message (or the runner's own words when not found).
        log_path: the run's ``pipeline.log``, which holds the step's whole output.
    """

    def __init__(self, task: str, error_type: str, message: str, log_path: Path) -> None:
        self.task = task
        self.error_type = error_type
        self.message = message
        self.log_path = log_path
        super().__init__(f"pipeline task '{task}' failed: {message}")


def failed_task(log_text: str) -> tuple[str, str, str] | None:
    """``(task, error type, message)`` of the first task a pipeline log reports as failed: the
    last exception line printed between the task's start and its FAILURE line."""
    lines = [_ANSI.sub("", line) for line in log_text.splitlines()]
    for end, line in enumerate(lines):
        found = _FAILED.search(line)
        if not found:
            continue
        task = found.group(1)
        start = max((i for i in range(end) if f"Executing task '{task}'" in lines[i]), default=0)
        for candidate in reversed(lines[start:end]):
            exception = _EXCEPTION.match(candidate)
            if exception:
                return task, exception.group(2), exception.group(3).strip()
        return task, "", "no error message in its output"
    return None


def _resolve_paths(cfg):
    """Absolute dataset root, so that every step finds it whatever its working directory."""
    root = cfg.data.root
    if "://" in root:
        return cfg
    return cfg.replace(**{"data.root": str(Path(root).resolve())})


class _HistoryWatcher(threading.Thread):
    """Prints each round's row as soon as its evaluate step has written the history.

    Only runs that start after the watcher count: a run folder used again (``make demo``
    twice) holds the histories of earlier runs under the same pipeline root.
    """

    def __init__(self, pipeline_root: Path, emit) -> None:
        super().__init__(daemon=True)
        self.pipeline_root = pipeline_root
        self.emit = emit
        self.printed = 0
        self.stopped = threading.Event()
        self.earlier = set(pipeline_root.glob("*")) if pipeline_root.is_dir() else set()

    def poll(self) -> None:
        histories = sorted(
            (
                p
                for p in self.pipeline_root.glob("*/*/new_history")
                if p.parents[1] not in self.earlier
            ),
            key=os.path.getmtime,
        )
        if not histories:
            return
        rows = parse_rows(histories[-1])  # ValueError while a line is half written: next poll
        while self.printed < len(rows):
            self.emit(rows[self.printed])
            self.printed += 1

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            with contextlib.suppress(OSError, ValueError):
                self.poll()


@contextlib.contextmanager
def _output_to(log_path: Path):
    """Send this process's output, and its children's, to a file; yields the old stdout.

    Both levels are redirected: file descriptors 1 and 2 (what subprocesses inherit) and
    ``sys.stdout`` / ``sys.stderr`` (what Python code and logging handlers write to).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        on_fd1 = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # e.g. replaced by a test's capture
        on_fd1 = False
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1) if on_fd1 else sys.stdout
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield terminal
        finally:
            log.flush()
            if terminal is not sys.stdout:
                terminal.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def init_runner(pipeline_root: Path) -> None:
    """`kfp.local` with the subprocess runner, outputs under `pipeline_root` and the run's
    workspace (where the steps mirror an s3:// dataset, as on a cluster) in
    ``pipeline_root/workspace``, which kfp deletes when the run ends."""
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
        workspace_root=str(pipeline_root / "workspace"),
    )


def run_local(cfg, out: Path, echo=None) -> list[dict]:
    """Run the training pipeline locally; returns the rows of RUN/metrics.jsonl.

    `echo` receives the round table line by line as rounds finish; by default the lines go
    to the terminal (everything else the steps print goes to RUN/pipeline.log).
    """
    from mmm_core.engine.lifecycle import TABLE_HEADER, format_row
    from pipelines.training import build_training_pipeline

    out.mkdir(parents=True, exist_ok=True)
    cfg = _resolve_paths(cfg)
    if cfg.tracking.enabled:  # default: the embedded SQLite store in the run folder, no server
        cfg = cfg.replace(**{"tracking.uri": resolve_tracking_uri(cfg.tracking.uri, out)})
    config_path = (out / "config.yaml").resolve()
    dump_config(cfg, config_path)
    pipeline_root = (out / "pipeline_root").resolve()
    pipeline = build_training_pipeline(
        cfg.train.stage1_rounds, cfg.train.stage2_rounds, exit_handler=False
    )
    log_path = out / "pipeline.log"
    with _output_to(log_path) as terminal:

        def write(line: str) -> None:
            print(line, file=terminal)

        write_line = echo or write

        def emit(row: dict) -> None:
            write_line(format_row(row))

        write_line(TABLE_HEADER)
        watcher = _HistoryWatcher(pipeline_root, emit)
        watcher.start()
        try:
            init_runner(pipeline_root)
            # (the config's tracking choice, also where MLFLOW_TRACKING_URI is set)
            enabled = str(cfg.tracking.enabled).lower()
            task = pipeline(config_file=str(config_path), tracking_enabled=enabled)
        except RuntimeError as exc:
            failure = failed_task(log_path.read_text(errors="replace"))
            if failure is None:
                raise
            raise PipelineTaskError(*failure, log_path) from exc
        finally:
            watcher.stopped.set()
            watcher.join()
        history = Path(task.output.path)
        watcher.poll()
    (out / "metrics.jsonl").write_text(history.read_text())
    return parse_rows(out / "metrics.jsonl")
