"""The `mmm` command's error boundary: each expected failure ends in one line that names its
cause, with exit code 2 (bad input) or 1 (runtime fault), no traceback, and nothing of an
earlier run changed. Unexpected errors keep their traceback, plus a line saying so."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mmm_cli.main import main
from tests.conftest import MICRO_OVERRIDES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def train_argv(root: Path | str, out: Path, *extra: str) -> list[str]:
    sets = [f"data.root={root}", *MICRO_OVERRIDES]
    argv = ["train", "--config", str(CONFIGS / "synthetic-tiny.yaml"), "--out", str(out)]
    for item in sets:
        argv += ["--set", item]
    return [*argv, *extra]


def run(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    """The stderr of an expected failure: no traceback, one line starting with 'error: '."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("train.batch_size_eval=0", "'train.batch_size_eval': must be >= 1"),
        ("train.weight_decay=-1", "'train.weight_decay': must be >= 0"),
        ("train.device=gpu0", "'train.device': expected auto, cpu, cuda, cuda:N or mps"),
        ("train.gamma=0", "'train.gamma'"),
        ("model.pretrained=missing-weights.pt", "no such weights file 'missing-weights.pt'"),
    ],
)
def test_config_values_are_refused_at_load(capsys, micro_dataset, tmp_path, setting, named):
    code, err = run(capsys, train_argv(micro_dataset, tmp_path / "run", "--set", setting))
    assert code == 2
    assert named in one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_cuda_on_a_machine_without_it(capsys, micro_dataset, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run(
        capsys, train_argv(micro_dataset, tmp_path / "run", "--set", "train.device=cuda")
    )
    assert code == 2 and "'train.device'" in one_error_line(err) and "CUDA" in err


def test_out_is_a_file(capsys, micro_dataset, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code, err = run(capsys, train_argv(micro_dataset, target))
    assert code == 2 and f"{target}: is a file" in one_error_line(err)
    assert target.read_text() == "mine"


@pytest.mark.slow
def test_a_finished_run_is_never_overwritten_silently(capsys, micro_dataset, tmp_path):
    out = tmp_path / "run"
    assert main(train_argv(micro_dataset, out)) == 0
    capsys.readouterr()
    before = digest(out)
    code, err = run(capsys, train_argv(micro_dataset, out, "--set", "seed=7"))
    assert code == 2
    assert "already holds a run" in one_error_line(err) and "--overwrite" in err
    assert digest(out) == before
    # a damaged checkpoint on --resume: named, nothing else touched
    (out / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes()[:1000])
    damaged = digest(out)
    code, err = run(capsys, train_argv(micro_dataset, out, "--resume"))
    assert code == 2
    assert f"{out / 'checkpoint.pt'}: not a readable checkpoint" in one_error_line(err)
    assert digest(out) == damaged


def test_resume_without_a_checkpoint(capsys, micro_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"round": 0}\n' * 4)
    code, err = run(capsys, train_argv(micro_dataset, out, "--resume"))
    assert code == 2 and "no checkpoint to resume from" in one_error_line(err)
    assert (out / "metrics.jsonl").read_text() == '{"round": 0}\n' * 4


def test_unreachable_s3_is_a_runtime_fault(capsys, caplog, tmp_path, monkeypatch, unused_port_here):
    monkeypatch.setenv("MINIO_ENDPOINT", f"127.0.0.1:{unused_port_here}")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "nobody")
    monkeypatch.setenv("MINIO_SECRET_KEY", "nothing")
    monkeypatch.setenv("MINIO_SECURE", "0")
    monkeypatch.setenv("MMM_CACHE_DIR", str(tmp_path / "cache"))
    code, err = run(capsys, train_argv("s3://mmm-data/sysu", tmp_path / "run"))
    line = one_error_line(err)
    assert code == 1 and f"127.0.0.1:{unused_port_here}" in line
    # no "Retrying (Retry(total=...))" lines from the HTTP client before the error line
    assert not [r for r in caplog.records if r.name.startswith("urllib3")]


def test_s3_without_credentials(capsys, tmp_path, monkeypatch):
    for name in ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    code, err = run(capsys, train_argv("s3://mmm-data/sysu", tmp_path / "run"))
    assert code == 1 and "MINIO_ENDPOINT is not set" in one_error_line(err)


@pytest.mark.slow
def test_no_clusters_is_a_runtime_fault(capsys, micro_dataset, tmp_path):
    argv = train_argv(micro_dataset, tmp_path / "run", "--set", "cluster.min_samples=10000")
    code, err = run(capsys, argv)
    assert code == 1 and "cluster" in one_error_line(err).lower()


def test_debug_shows_the_traceback(capsys, micro_dataset, tmp_path, monkeypatch):
    argv = train_argv(micro_dataset, tmp_path / "run", "--set", "train.batch_size_eval=0")
    code, err = run(capsys, ["--debug", *argv])
    assert code == 2 and "Traceback" in err and "error: " in err
    monkeypatch.setenv("MMM_DEBUG", "1")
    code, err = run(capsys, argv)
    assert code == 2 and "Traceback" in err


def test_an_unexpected_error_keeps_its_traceback(capsys, monkeypatch):
    from mmm_cli.commands import COMMANDS

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(COMMANDS["rounds"], "main", broken)
    code, err = run(capsys, ["rounds", "x", "--out", "y.png"])
    assert code == 1
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "unexpected error" in err.splitlines()[-1]


@pytest.fixture
def unused_port_here() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_partial_history_line_is_named(capsys, tmp_path):
    history = tmp_path / "metrics.jsonl"
    history.write_text('{"round": 0, "mAP": 0.1}\n{"round": 1, "mA')
    code, err = run(capsys, ["rounds", str(history), "--out", str(tmp_path / "r.png")])
    assert code == 2 and f"{history}:2: not a JSON object" in one_error_line(err)


def test_unknown_pretrain_preset_is_a_usage_error(capsys, tmp_path):
    argv = ["pretrain", "--out", str(tmp_path / "w.pt"), "--preset", "huge"]
    code, err = run(capsys, argv)
    assert code == 2 and "--preset 'huge' is unknown" in one_error_line(err)


def test_synth_overwrite_spares_a_real_dataset(capsys, tmp_path):
    real = tmp_path / "SYSU-MM01"
    (real / "cam1" / "0001").mkdir(parents=True)
    (real / "cam1" / "0001" / "0001.jpg").write_bytes(b"a real photo")
    (real / "exp").mkdir()
    (real / "exp" / "train_id.txt").write_text("1\n")
    before = digest(real)
    argv = ["synth", "--format", "sysu", "--out", str(real), "--ids", "8", "--overwrite"]
    code, err = run(capsys, argv)
    assert code == 2 and "holds no synthetic.json" in one_error_line(err)
    assert digest(real) == before


@pytest.mark.slow
def test_resume_refuses_a_config_that_does_not_fit(capsys, micro_dataset, tmp_path):
    out = tmp_path / "run"
    short = ["--set", "train.stage1_rounds=1", "--set", "train.stage2_rounds=0"]
    assert main(train_argv(micro_dataset, out, *short)) == 0
    capsys.readouterr()
    before = digest(out)
    wider = train_argv(micro_dataset, out, "--resume", "--set", "model.width=32")
    code, err = run(capsys, wider)
    line = one_error_line(err)
    assert code == 2 and "'model.width': is 32" in line and "trained with 16" in line
    bigger = train_argv(micro_dataset, out, "--resume", "--set", "data.height=96")
    code, err = run(capsys, bigger)
    assert code == 2 and "is 96x32" in one_error_line(err) and "trained with 64x32" in err
    # mmm evaluate takes the network from the checkpoint; a config that differs is named
    evaluate = ["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--format", "sysu",
                "--root", str(micro_dataset), "--config", str(CONFIGS / "synthetic-tiny.yaml"),
                "--set", "model.width=32"]  # fmt: skip
    code, err = run(capsys, evaluate)
    line = one_error_line(err)
    assert code == 2 and "'model.width': is 32" in line and "holds a width 16 model" in line
    # a history shorter than the checkpoint is an error, not a silent gap
    (out / "metrics.jsonl").write_text("")
    code, err = run(capsys, train_argv(micro_dataset, out, "--resume"))
    assert code == 2 and "0 rows, but the checkpoint is after round 0" in one_error_line(err)
    before["metrics.jsonl"] = digest(out)["metrics.jsonl"]
    assert digest(out) == before


def test_a_dead_tracking_server_fails_before_the_run_folder_exists(
    capsys, micro_dataset, tmp_path, unused_port_here
):
    out = tmp_path / "run"
    uri = f"http://127.0.0.1:{unused_port_here}"
    argv = train_argv(
        micro_dataset, out, "--set", "tracking.enabled=true", "--set", f"tracking.uri={uri}"
    )
    code, err = run(capsys, argv)
    line = one_error_line(err)
    assert code == 1 and f"MLflow tracking server {uri} is not reachable" in line
    assert not out.exists()  # a retry is not refused as "already holds a run"


@pytest.mark.slow
def test_temp_files_of_an_interrupted_write_are_removed(capsys, micro_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    orphans = [out / "checkpoint.ptx8k2_a.tmp", out / "tracking.json.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a write")
    short = ["--set", "train.stage1_rounds=1", "--set", "train.stage2_rounds=0"]
    code, _ = run(capsys, train_argv(micro_dataset, out, "--overwrite", *short))
    assert code == 0
    assert not [p for p in orphans if p.exists()] and not list(out.glob("*.tmp"))
    assert (out / "checkpoint.pt").is_file()
