"""``mmm schedule``: cron conversion and checks, parameters, and the calls made to a KFP client."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mmm_cli.commands import schedule
from pipelines.schedule import parse_params, to_kfp_cron


@pytest.mark.parametrize(
    "expression,expected",
    [
        ("0 3 * * *", "0 0 3 * * *"),  # five fields: seconds prepended
        ("  */15  1-5 * * MON-FRI ", "0 */15 1-5 * * MON-FRI"),
        ("30 0 3 * * ?", "30 0 3 * * ?"),  # six fields kept
        ("0 0 9 ? * 2-6", "0 0 9 ? * 2-6"),  # the example of kfp's docstring
        ("0 0 1,15 jan,jul *", "0 0 0 1,15 jan,jul *"),
        ("@daily", "0 0 0 * * *"),
        ("@Weekly", "0 0 0 * * 0"),
    ],
)
def test_to_kfp_cron(expression: str, expected: str) -> None:
    assert to_kfp_cron(expression) == expected


@pytest.mark.parametrize(
    "expression,message",
    [
        ("0 3 * *", "got 4"),
        ("0 0 3 * * * *", "got 7"),
        ("", "got 0"),
        ("60 3 * * *", "minute: 60 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 3 0 * *", "day of month: 0 is outside 1-31"),
        ("0 3 * 13 *", "month: 13 is outside 1-12"),
        ("0 3 * * 7", "day of week: 7 is outside 0-6"),
        ("0 3 * FOO *", "month: 'FOO'"),
        ("? 3 * * *", "'?' is only allowed"),
        ("0 5-3 * * *", "empty"),
        ("*/0 3 * * *", "at least 1"),
        ("0 3 * * 1//2", "cannot read"),
        ("@every 1h", "unknown cron descriptor"),
    ],
)
def test_bad_cron_is_refused(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("*", r"\*")):
        to_kfp_cron(expression)


TYPES = {
    "data_root": "STRING",
    "min_new_images": "NUMBER_INTEGER",
    "min_improvement": "NUMBER_DOUBLE",
    "overrides": "LIST",
}


def test_parse_params_converts_to_the_pipeline_types() -> None:
    params = parse_params(
        [
            "data_root=s3://cams/sysu",
            "min_new_images=200",
            "min_improvement=0.01",
            'overrides=["memory.momentum=0.2"]',
        ],
        TYPES,
    )
    assert params == {
        "data_root": "s3://cams/sysu",
        "min_new_images": 200,
        "min_improvement": 0.01,
        "overrides": ["memory.momentum=0.2"],
    }
    with pytest.raises(ValueError, match="unknown pipeline parameter 'nope'"):
        parse_params(["nope=1"], TYPES)
    with pytest.raises(ValueError, match="not an integer"):
        parse_params(["min_new_images=many"], TYPES)
    with pytest.raises(ValueError, match="name=value"):
        parse_params(["data_root"], TYPES)


class FakeClient:
    """Records the calls `mmm schedule` makes; keeps the pipeline package it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.package: dict | None = None

    def create_experiment(self, name: str, **kwargs):
        self.calls.append(("create_experiment", {"name": name, **kwargs}))
        return SimpleNamespace(experiment_id="exp-7")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("create_recurring_run", kwargs))
        self.package = next(yaml.safe_load_all(Path(kwargs["pipeline_package_path"]).read_text()))
        return SimpleNamespace(recurring_run_id="rr-42")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    schedule.configure_parser(parser)
    return parser.parse_args(list(argv))


def test_main_creates_a_recurring_run(capsys) -> None:
    client = FakeClient()
    args = _args(
        "--cron",
        "0 3 * * *",
        "--host",
        "http://kfp.example:8888",
        "--rounds",
        "2",
        "--param",
        "data_root=s3://cams/sysu",
        "--param",
        "min_new_images=50",
    )
    assert schedule.main(args, client=client) == 0
    (name, experiment), (call, kwargs) = client.calls
    assert (name, experiment) == ("create_experiment", {"name": "mmm-retraining"})
    assert call == "create_recurring_run"
    assert kwargs["experiment_id"] == "exp-7"
    assert kwargs["cron_expression"] == "0 0 3 * * *"
    assert kwargs["job_name"] == "mmm-retrain-2r"
    assert kwargs["params"] == {"data_root": "s3://cams/sysu", "min_new_images": 50}
    assert kwargs["max_concurrency"] == 1 and kwargs["no_catchup"] is True
    assert kwargs["enabled"] is True and kwargs.get("interval_second") is None
    assert not Path(kwargs["pipeline_package_path"]).exists()  # a temporary package
    names = [t["taskInfo"]["name"] for t in client.package["root"]["dag"]["tasks"].values()]
    assert "retrain round 1" in names and "retrain round 2" not in names
    assert len(client.package["components"]["comp-mmm-round"]["dag"]["tasks"]) == 5
    assert "rr-42" in capsys.readouterr().out


def test_main_refuses_bad_input_before_contacting_kfp(capsys) -> None:
    client = FakeClient()
    bad_cron = _args("--cron", "0 25 * * *", "--host", "h")
    assert schedule.main(bad_cron, client=client) == 2
    assert "hour" in capsys.readouterr().err
    bad_param = _args("--cron", "@daily", "--host", "h", "--rounds", "1", "--param", "x=1")
    assert schedule.main(bad_param, client=client) == 2
    assert "unknown pipeline parameter 'x'" in capsys.readouterr().err
    assert client.calls == []


def test_mmm_dispatches_to_the_command(capsys) -> None:
    from mmm_cli.commands import COMMANDS
    from mmm_cli.main import main

    assert COMMANDS["schedule"] is schedule
    # A bad cron is refused by the command before any KFP client is made.
    assert main(["schedule", "--cron", "0 25 * * *", "--host", "http://127.0.0.1:9"]) == 2
    assert "--cron" in capsys.readouterr().err
