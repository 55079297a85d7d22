"""The `mmm` command: every subcommand is registered, builds its parser and is dispatched."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mmm_cli.commands import COMMANDS
from mmm_cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_builds_its_parser(name: str) -> None:
    command = COMMANDS[name]
    assert command.HELP and callable(command.main)
    parser = argparse.ArgumentParser(prog=f"mmm {name}")
    command.configure_parser(parser)
    assert parser.format_help().startswith(f"usage: mmm {name}")


def test_top_level_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for name, command in COMMANDS.items():
        assert name in text and command.HELP.split()[0] in text


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_a_config_error_is_one_line_and_status_2(tmp_path: Path, capsys) -> None:
    assert main(["sweep", "--grid", str(tmp_path / "absent.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "absent.yaml" in err and "not found" in err


def test_python_m_mmm_cli_is_the_mmm_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mmm_cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "usage: mmm" in done.stdout
