"""The ``mmm`` entry point: the top-level parser, one subcommand of `mmm_cli.commands`, and the
one error boundary every subcommand runs inside.

Every expected failure ends in one line naming its cause (file, line, key, URI, server) and
the exit code says what kind it was: 2 for bad input or usage (config, dataset, files,
checkpoints, weights), 1 for a fault at run time (storage, tracking server, clustering that
found nothing). No traceback unless ``--debug`` (or ``MMM_DEBUG=1``). Anything unexpected
still shows its traceback, followed by a line saying that it is one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from mmm_cli.commands import COMMANDS
from mmm_cli.errors import UsageError
from mmm_core.config import ConfigError
from mmm_core.data.manifest import DatasetError
from mmm_core.engine.checkpoint import CheckpointError
from mmm_core.engine.labels import NoClustersError
from mmm_core.engine.lifecycle import HistoryError
from mmm_core.models.weights import PretrainedWeightsError
from mmm_core.storage import StorageError
from mmm_core.tracking import TrackingError

__all__ = ["BAD_INPUT", "RUNTIME_FAULTS", "build_parser", "main"]

# Exit code 2: what the user gave cannot be used as it is.
BAD_INPUT: tuple[type[BaseException], ...] = (
    UsageError,
    ConfigError,
    HistoryError,
    DatasetError,
    CheckpointError,
    PretrainedWeightsError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
)
# Exit code 1: the input may be fine, something failed while running.
RUNTIME_FAULTS: tuple[type[BaseException], ...] = (
    StorageError,
    TrackingError,
    NoClustersError,
    PermissionError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmm",
        description="Multi-Memory Matching for unsupervised visible-infrared person re-ID.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of every error (also: MMM_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.HELP, add_help=False)
    return parser


def describe(err: BaseException) -> str:
    """The one-line message of an expected failure."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    text = str(err).strip() or type(err).__name__
    return " ".join(text.split()) if "\n" not in text.strip() else text


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    known, rest = top.parse_known_args(argv)
    if known.command is None:
        top.print_help()
        return 2
    command = COMMANDS[known.command]
    parser = argparse.ArgumentParser(prog=f"mmm {known.command}", description=command.HELP)
    command.configure_parser(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if known.verbose > 1 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not known.verbose:  # the HTTP clients' retry chatter ("Retrying (Retry(total=2...")
        # would print before the one error line that names the cause; -v shows it
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it loads
    debug = known.debug or os.environ.get("MMM_DEBUG", "") not in ("", "0")
    prog = f"mmm {known.command}"
    try:
        return int(command.main(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (*BAD_INPUT, *RUNTIME_FAULTS) as err:
        if debug:
            traceback.print_exc()
        print(f"error: {describe(err)}", file=sys.stderr)
        return 2 if isinstance(err, BAD_INPUT) else 1
    except Exception:
        traceback.print_exc()
        print(
            f"{prog}: unexpected error (the traceback above is a bug to report, with the "
            "command that caused it)",
            file=sys.stderr,
        )
        return 1
