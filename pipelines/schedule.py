"""A KFP recurring run (cron) of the retraining pipeline (the ``mmm schedule`` command).

    mmm schedule --cron "0 3 * * *" --host http://ml-pipeline-ui.kubeflow:80 \\
        --param data_root=s3://cameras/sysu --param min_new_images=200

compiles `pipelines.retrain.build_retrain_pipeline` with ``--rounds`` rounds into a temporary
package, finds or creates the KFP experiment and creates a recurring run with
``kfp.Client.create_recurring_run``: at most one run at a time (``--max-concurrency``, so two
retrainings never race for the champion), no backfill of missed runs unless ``--catchup``.

Cron. KFP's scheduler parses cron expressions with six fields, seconds first (``sec min hour
day-of-month month day-of-week``), and a five-field expression there is read as *seconds*
to day-of-month rather than failing (``0 3 * * *`` would run at minute 3 of every hour). So
this command accepts the usual five-field cron and converts it by prepending ``0`` seconds,
takes six fields as they are, and accepts the descriptors ``@hourly``, ``@daily``
(``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``); every field is
checked (numbers in range, ``*``, ``?`` in the day fields, ``a-b``, ``a,b``, ``/step``, month
and weekday names) before anything is sent. Times are the KFP server's time zone (UTC on
most clusters).

Parameters: ``--param name=value`` (repeatable) sets a run-time parameter of the retraining
pipeline; names are checked against the compiled pipeline and values converted to its types
(integers, numbers, booleans; a list as JSON, e.g. ``overrides=["memory.momentum=0.2"]``).

The KFP client is made by `connect` (``kfp.Client(host=..., namespace=...)``, which also reads
the usual KF_PIPELINES_* variables); `schedule` takes a client factory (tests pass a fake).
"""

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["connect", "parse_params", "schedule", "to_kfp_cron"]

DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# field name, lowest, highest, names (index + lowest = value), whether "?" is allowed
FIELDS = (
    ("second", 0, 59, (), False),
    ("minute", 0, 59, (), False),
    ("hour", 0, 23, (), False),
    ("day of month", 1, 31, (), True),
    ("month", 1, 12, MONTHS, False),
    ("day of week", 0, 6, WEEKDAYS, True),
)
_KINDS = {
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a number",
    "BOOLEAN": "a boolean (true or false)",
    "LIST": "a JSON list",
}
_ITEM = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


def _value(token: str, field: tuple) -> int:
    name, low, high, names, _ = field
    if token.isdigit():
        value = int(token)
    elif token.upper() in names:
        value = names.index(token.upper()) + low
    else:
        raise ValueError(f"{name}: {token!r} is not a number or a name")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside {low}-{high}")
    return value


def _check_field(text: str, field: tuple) -> None:
    name, _, _, _, question = field
    if text == "?":
        if not question:
            raise ValueError(f"{name}: '?' is only allowed for day of month and day of week")
        return
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{name}: cannot read {item!r}")
        if match["step"] is not None and int(match["step"]) < 1:
            raise ValueError(f"{name}: the step of {item!r} must be at least 1")
        if match["range"] == "*":
            continue
        bounds = [_value(token, field) for token in match["range"].split("-")]
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise ValueError(f"{name}: the range {item!r} is empty")


def to_kfp_cron(expression: str) -> str:
    """The six-field cron expression (seconds first) that KFP expects.

    Five fields (standard cron) get ``0`` seconds prepended; six fields are kept; the
    descriptors of `DESCRIPTORS` are expanded. Raises ValueError naming the bad field.
    """
    text = " ".join(expression.split())
    if text.lower() in DESCRIPTORS:
        return DESCRIPTORS[text.lower()]
    if text.startswith("@"):
        raise ValueError(
            f"unknown cron descriptor {text!r}; use one of {', '.join(DESCRIPTORS)} or fields"
        )
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds "
            f"first), got {len(fields)}: {expression!r}"
        )
    for text_field, field in zip(fields, FIELDS, strict=True):
        _check_field(text_field, field)
    return " ".join(fields)


def _convert(name: str, value: str, parameter_type: str) -> Any:
    try:
        if parameter_type == "NUMBER_INTEGER":
            return int(value)
        if parameter_type == "NUMBER_DOUBLE":
            return float(value)
        if parameter_type == "BOOLEAN":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if parameter_type == "LIST":
            parsed = json.loads(value)
            if not isinstance(parsed, list):
                raise ValueError(value)
            return parsed
    except ValueError:
        kind = _KINDS.get(parameter_type, parameter_type)
        raise ValueError(f"parameter {name}: {value!r} is not {kind}") from None
    return value


def parse_params(items: list[str], parameter_types: dict[str, str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> ``{name: typed value}``, names and types checked against
    `parameter_types` (the compiled pipeline's ``parameterType`` per input)."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param expects name=value, got {item!r}")
        if name not in parameter_types:
            raise ValueError(
                f"unknown pipeline parameter {name!r}; known: {', '.join(sorted(parameter_types))}"
            )
        params[name] = _convert(name, value, parameter_types[name])
    return params


def _parameter_types(package: Path) -> dict[str, str]:
    import yaml

    spec = next(yaml.safe_load_all(package.read_text()))
    definitions = spec["root"]["inputDefinitions"]["parameters"]
    return {name: d["parameterType"] for name, d in definitions.items()}


def connect(host: str, namespace: str | None = None) -> Any:
    """A `kfp.Client` for the KFP API at `host`."""
    import kfp

    return kfp.Client(host=host, namespace=namespace) if namespace else kfp.Client(host=host)


def schedule(
    client_factory: Callable[[], Any],
    cron: str,
    *,
    experiment: str,
    job_name: str,
    rounds: int,
    params: list[str],
    max_concurrency: int = 1,
    catchup: bool = False,
    pipeline_root: str | None = None,
    service_account: str | None = None,
) -> Any:
    """Compile the retraining pipeline and create its recurring run; returns what KFP returns.

    `client_factory` returns the KFP client; it is called only once the cron expression and
    the parameters are known to be valid (ValueError otherwise, before contacting KFP).
    """
    from pipelines.compact import compile_pipeline
    from pipelines.retrain import build_retrain_pipeline

    cron6 = to_kfp_cron(cron)
    with tempfile.TemporaryDirectory() as folder:
        package = Path(folder) / f"retrain-{rounds}.yaml"
        compile_pipeline(build_retrain_pipeline(rounds), package)
        values = parse_params(params, _parameter_types(package))
        client = client_factory()
        found = client.create_experiment(name=experiment)
        return client.create_recurring_run(
            experiment_id=found.experiment_id,
            job_name=job_name,
            description=(
                f"mmm retraining, {rounds} stage-2 rounds, cron {cron6!r} (created by mmm schedule)"
            ),
            cron_expression=cron6,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
            params=values,
            pipeline_package_path=str(package),
            enabled=True,
            pipeline_root=pipeline_root,
            service_account=service_account,
        )
