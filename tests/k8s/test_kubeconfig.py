"""Reading kubeconfig files the way kubectl does, as data (no cluster needed): merge rules,
relative paths, credential caching, proxies from the environment, and one-line errors for
what we do not support. Reaching a real API server with each of these is in test_transport.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from podsync.errors import TransportError
from podsync.transport.k8s_rest import proxy_for
from podsync.transport.kubeconfig import load_api_access


def write(path: Path, server: str = "https://10.1.2.3:6443", **user: Any) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config"
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def test_defaults_namespace_and_yaml(kubeconfig: Path) -> None:
    kubeconfig.write_text(
        "apiVersion: v1\nclusters:\n- name: c\n  cluster: {server: 'https://k:6443/'}\n"
        "users:\n- name: u\n  user: {token: abc}\n"
        "contexts:\n- name: ctx\n  context: {cluster: c, user: u, namespace: team}\n"
        "current-context: ctx\n"
    )
    access = load_api_access(None, None)
    assert (access.host, access.namespace, access.context) == ("https://k:6443", "team", "ctx")
    assert access.auth_headers() == {"Authorization": "Bearer abc"}
    assert load_api_access(None, "mine").namespace == "mine"


def test_basic_auth_and_no_current_context(kubeconfig: Path) -> None:
    write(kubeconfig, username="ann", password="pw")
    assert load_api_access(None, None).auth_headers() == {"Authorization": "Basic YW5uOnB3"}
    data = json.loads(kubeconfig.read_text())
    del data["current-context"]
    kubeconfig.write_text(json.dumps(data))
    with pytest.raises(TransportError, match=r"^cannot load kubeconfig: no current context"):
        load_api_access(None, None)
    assert load_api_access("ctx", None).context == "ctx"


def test_legacy_auth_provider_is_a_one_line_error(kubeconfig: Path) -> None:
    write(kubeconfig, **{"auth-provider": {"name": "oidc", "config": {}}})
    with pytest.raises(TransportError, match="auth-provider 'oidc' is not supported; use an exec"):
        load_api_access(None, None)


def test_a_missing_certificate_file_is_a_one_line_error(kubeconfig: Path) -> None:
    write(kubeconfig, **{"client-certificate": "nope.crt", "client-key": "nope.key"})
    with pytest.raises(TransportError, match=r"^cannot load kubeconfig: .*nope\.crt"):
        load_api_access(None, None)


def test_plugin_credential_is_kept_until_it_expires(kubeconfig: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    status = {"token": "t1", "expirationTimestamp": "2999-01-01T00:00:00Z"}
    out = json.dumps({"kind": "ExecCredential", "status": status})
    plugin = tmp_path / "plugin"
    plugin.write_text(f"#!/bin/sh\necho run >> {calls}\necho '{out}'\n")
    plugin.chmod(0o755)
    write(kubeconfig, exec={"command": str(plugin), "interactiveMode": "Never"})
    access = load_api_access(None, None)
    assert not calls.exists()
    assert access.auth_headers() == {"Authorization": "Bearer t1"}
    assert access.auth_headers() == {"Authorization": "Bearer t1"}
    assert calls.read_text().split() == ["run"]
    access.refresh()  # what a 401 does
    access.auth_headers()
    assert calls.read_text().split() == ["run", "run"]


def test_proxy_from_the_environment_but_never_for_loopback(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    write(kubeconfig, token="x")
    assert proxy_for(load_api_access(None, None)) == "http://proxy.example:3128"
    for server in ("https://127.0.0.1:6443", "https://localhost:6443", "https://[::1]:6443",
                   "https://api.internal.example:6443"):  # fmt: skip
        write(kubeconfig, server=server, token="x")
        assert proxy_for(load_api_access(None, None)) is None, server
    data = json.loads(write(kubeconfig, server="https://127.0.0.1:1", token="x").read_text())
    data["clusters"][0]["cluster"]["proxy-url"] = "http://127.0.0.1:9"
    kubeconfig.write_text(json.dumps(data))
    assert proxy_for(load_api_access(None, None)) == "http://127.0.0.1:9"


def test_the_cli_says_one_line_for_an_unusable_kubeconfig(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUBECONFIG": str(tmp_path / "absent"), "PODSYNC_POD_WAIT_SECONDS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "podsync", "sync", "--pod", "web", "--no-watch"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot load kubeconfig: no kubeconfig at {tmp_path / 'absent'}" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
