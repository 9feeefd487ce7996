"""Exec-credential plugins of kubeconfig users (``users[*].user.exec``), as kubectl runs them.

Owns: :class:`ExecPlugin` (runs the plugin, parses its ``ExecCredential``, keeps the credential
until its ``expirationTimestamp``) and :class:`Credential`. May import: the standard library
and ``podsync.errors``.

The plugin (gke-gcloud-auth-plugin, ``aws eks get-token``, kubelogin, ...) gets the
kubeconfig's ``args`` and ``env`` on top of ours, and ``KUBERNETES_EXEC_INFO`` (the request,
with the cluster when ``provideClusterInfo`` is set). It may print a token or a client
certificate and key. It is interactive (our terminal as its stdin) only when
``interactiveMode`` allows it and we have a terminal.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podsync.errors import TransportError

#: A credential this close to its expiry is renewed before use.
EXPIRY_MARGIN_SECONDS = 10.0
PLUGIN_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Credential:
    token: str | None
    #: (certificate PEM, key PEM) when the plugin hands out a client certificate.
    client_cert: tuple[bytes, bytes] | None
    #: None: valid for as long as the process runs.
    expires: dt.datetime | None

    def fresh(self, now: dt.datetime) -> bool:
        if self.expires is None:
            return True
        return (self.expires - now).total_seconds() > EXPIRY_MARGIN_SECONDS


def _expiry(text: Any) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class ExecPlugin:
    """One ``exec`` user entry; thread-safe (dials may ask for headers concurrently)."""

    def __init__(
        self,
        command: str,
        args: list[str],
        env: dict[str, str],
        api_version: str,
        interactive_mode: str,
        cluster_info: Mapping[str, Any] | None,
        install_hint: str = "",
    ) -> None:
        self.command = command
        self.args = args
        self.env = env
        self.api_version = api_version
        self.interactive_mode = interactive_mode
        self.cluster_info = cluster_info
        self.install_hint = install_hint
        self._lock = threading.Lock()
        self._cached: Credential | None = None

    @classmethod
    def from_config(
        cls, entry: Mapping[str, Any], folder: Path, cluster: Mapping[str, Any]
    ) -> ExecPlugin:
        command = str(entry.get("command") or "")
        if not command:
            raise ValueError("the user's exec plugin has no command")
        if os.sep in command and not os.path.isabs(command):
            command = str(folder / command)  # relative to the kubeconfig, as kubectl does
        env = {str(e.get("name")): str(e.get("value", "")) for e in entry.get("env") or []}
        info = None
        if entry.get("provideClusterInfo"):
            info = {"server": cluster.get("server")}
            for key in ("certificate-authority-data", "insecure-skip-tls-verify",
                        "tls-server-name", "proxy-url"):  # fmt: skip
                if cluster.get(key):
                    info[key] = cluster[key]
        return cls(
            command=command,
            args=[str(a) for a in entry.get("args") or []],
            env=env,
            api_version=str(entry.get("apiVersion") or "client.authentication.k8s.io/v1beta1"),
            interactive_mode=str(entry.get("interactiveMode") or "IfAvailable"),
            cluster_info=info,
            install_hint=str(entry.get("installHint") or ""),
        )

    def credential(self) -> Credential:
        """The cached credential, or a new one from the plugin when missing or expiring."""
        with self._lock:
            now = dt.datetime.now(dt.UTC)
            if self._cached is None or not self._cached.fresh(now):
                self._cached = self._run()
            return self._cached

    def forget(self) -> None:
        with self._lock:
            self._cached = None

    def _interactive(self) -> bool:
        if self.interactive_mode == "Never":
            return False
        try:
            return sys.stdin is not None and sys.stdin.isatty()
        except (ValueError, OSError):
            return False

    def _run(self) -> Credential:
        interactive = self._interactive()
        request: dict[str, Any] = {"interactive": interactive}
        if self.cluster_info is not None:
            request["cluster"] = self.cluster_info
        exec_info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": request}
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(exec_info)}
        name = os.path.basename(self.command)
        try:
            done = subprocess.run(
                [self.command, *self.args],
                stdin=None if interactive else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None if interactive else subprocess.PIPE,
                env=env,
                timeout=PLUGIN_TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError as exc:
            hint = self.install_hint.strip().splitlines()
            raise TransportError(
                f"the kubeconfig's credential plugin {self.command} is not installed"
                + (f": {hint[0]}" if hint else "")
            ) from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TransportError(f"credential plugin {name} failed: {exc}") from exc
        if done.returncode != 0:
            err = (done.stderr or b"").decode("utf-8", "replace").strip().splitlines()
            why = err[-1] if err else f"exit code {done.returncode}"
            raise TransportError(f"credential plugin {name} failed: {why}")
        return self._parse(done.stdout, name)

    @staticmethod
    def _parse(out: bytes, name: str) -> Credential:
        try:
            status = json.loads(out).get("status") or {}
        except (ValueError, AttributeError) as exc:
            raise TransportError(f"credential plugin {name} printed no ExecCredential") from exc
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        token = status.get("token") or None
        if not token and not (cert and key):
            raise TransportError(f"credential plugin {name} gave neither a token nor a certificate")
        pair = (str(cert).encode(), str(key).encode()) if cert and key else None
        return Credential(token, pair, _expiry(status.get("expirationTimestamp")))
