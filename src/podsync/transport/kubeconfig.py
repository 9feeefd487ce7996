"""Kubernetes API access from kubeconfig, read the way kubectl reads it.

Owns: :class:`ApiAccess` (API server URL, effective namespace, context name, TLS settings,
proxy, and fresh auth headers) and :func:`load_api_access`. May import: the standard library,
``ruamel.yaml`` (only for a kubeconfig that is not JSON), ``podsync.errors`` and
``podsync.transport.k8s_auth``.

Why our own reader and not the official client: importing the client and building its
configuration cost ~0.4 s of every command, more than everything else podsync does to reach a
pod. What kubectl does, we do: ``KUBECONFIG`` lists (``a:b``) merged with the first file
winning for each name and for ``current-context``; files in the list that do not exist are
skipped; paths in a file are relative to that file's folder; CA data or file (a context with a
CA trusts only that CA), client certificate and key (data or files), ``insecure-skip-tls-verify``,
``tls-server-name``, ``proxy-url``, static ``token`` / ``tokenFile``, basic auth, and
exec-credential plugins (``k8s_auth``), run again when their credential has expired.
The legacy ``auth-provider`` plugins are not supported: one line says to use an exec plugin.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podsync.errors import TransportError
from podsync.transport.k8s_auth import ExecPlugin

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class ApiAccess:
    """How to reach one cluster as one user (one kubeconfig context)."""

    #: API server base URL, e.g. ``https://10.0.0.1:6443`` (may carry a path prefix).
    host: str
    #: Namespace to use: ``--namespace``, else the context's, else ``default``.
    namespace: str
    #: The kubeconfig context in use (what ``kubectl --context`` needs).
    context: str | None
    #: PEM of the CA to trust (None: the system store).
    ca_pem: str | None = None
    insecure: bool = False
    #: ``tls-server-name``: the name the server certificate is checked against.
    tls_server_name: str | None = None
    #: ``proxy-url`` of the cluster entry (None: the environment's HTTPS_PROXY/NO_PROXY).
    proxy_url: str | None = None
    #: Client certificate and key, PEM.
    client_cert: tuple[bytes, bytes] | None = None
    token: str | None = None
    token_file: str | None = None
    basic: tuple[str, str] | None = None
    plugin: ExecPlugin | None = field(default=None, compare=False)

    def auth_headers(self) -> dict[str, str]:
        """Current auth headers (runs the exec plugin when its credential is missing or has
        expired: blocking, call from a thread in async code)."""
        token = self.token
        if self.plugin is not None:
            token = self.plugin.credential().token or token
        if token is None and self.token_file:
            try:
                token = Path(self.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise TransportError(f"cannot read tokenFile {self.token_file}: {exc}") from exc
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self.basic is not None:
            raw = f"{self.basic[0]}:{self.basic[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def refresh(self) -> None:
        """Forget the plugin's credential (after a 401): the next request runs it again."""
        if self.plugin is not None:
            self.plugin.forget()

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings of the context (None for a plain-HTTP server); built once per client
        certificate (an exec plugin may hand out a new one)."""
        if not self.host.startswith("https://"):
            return None
        cert = self.client_cert
        if self.plugin is not None:
            cred = self.plugin.credential()
            if cred.client_cert is not None:
                cert = cred.client_cert
        cache: dict[Any, ssl.SSLContext] = self.__dict__.setdefault("_ssl", {})
        ctx = cache.get(cert)
        if ctx is None:
            ctx = cache[cert] = self._build_ssl(cert)
        return ctx

    def _build_ssl(self, cert: tuple[bytes, bytes] | None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            if self.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif self.ca_pem:
                ctx.load_verify_locations(cadata=self.ca_pem)
            else:
                ctx.load_default_certs()
            if cert is not None:
                _load_cert_chain(ctx, *cert)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise TransportError(f"cannot use the kubeconfig's TLS settings: {exc}") from exc
        return ctx

    @property
    def server_hostname(self) -> str | None:
        """``tls-server-name`` from the kubeconfig, when it overrides the URL's host."""
        return self.tls_server_name


def _load_cert_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads a certificate only from files: a private folder that lives for the call."""
    folder = tempfile.mkdtemp(prefix="podsync-tls-")
    try:
        paths = []
        for name, data in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            paths.append(path)
        ctx.load_cert_chain(paths[0], paths[1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- reading and merging kubeconfig files ----------------------------------------------------
def kubeconfig_paths() -> list[Path]:
    """``$KUBECONFIG`` (a ``:``-separated list, merged) or ``~/.kube/config``, read now."""
    raw = os.environ.get("KUBECONFIG", "")
    listed = [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return listed or [Path("~/.kube/config").expanduser()]


def _parse(path: Path) -> Obj:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        data = json.loads(text)
    else:
        from ruamel.yaml import YAML

        data = YAML(typ="safe").load(text)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: not a kubeconfig (expected a mapping)")
    return data


@dataclass
class _Merged:
    """Named entries (each with the folder of the file it came from) and current-context."""

    clusters: dict[str, tuple[Obj, Path]] = field(default_factory=dict)
    users: dict[str, tuple[Obj, Path]] = field(default_factory=dict)
    contexts: dict[str, Obj] = field(default_factory=dict)
    current: str | None = None


def _merge(paths: list[Path]) -> _Merged:
    merged = _Merged()
    found = False
    for path in paths:
        if not path.is_file():
            continue
        found = True
        data = _parse(path)
        folder = path.resolve().parent
        for key, inner, into in (
            ("clusters", "cluster", merged.clusters),
            ("users", "user", merged.users),
        ):
            for item in data.get(key) or []:
                name = str(item.get("name"))
                into.setdefault(name, (item.get(inner) or {}, folder))
        for item in data.get("contexts") or []:
            merged.contexts.setdefault(str(item.get("name")), item.get("context") or {})
        if merged.current is None and data.get("current-context"):
            merged.current = str(data["current-context"])
    if not found:
        raise FileNotFoundError(f"no kubeconfig at {os.pathsep.join(map(str, paths))}")
    return merged


def _file(value: Any, folder: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _data_or_file(entry: Obj, key: str, folder: Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(str(data))
    name = _file(entry.get(key), folder)
    return Path(name).read_bytes() if name else None


def _cluster_settings(cluster: Obj, folder: Path) -> dict[str, Any]:
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise ValueError("the cluster has no server URL")
    ca = _data_or_file(cluster, "certificate-authority", folder)
    return {
        "host": server,
        "ca_pem": ca.decode() if ca else None,
        "insecure": bool(cluster.get("insecure-skip-tls-verify")),
        "tls_server_name": cluster.get("tls-server-name") or None,
        "proxy_url": cluster.get("proxy-url") or None,
    }


def _user_settings(user: Obj, folder: Path, cluster: Obj) -> dict[str, Any]:
    if user.get("auth-provider"):
        name = (user["auth-provider"] or {}).get("name", "?")
        raise ValueError(
            f"the user's auth-provider {name!r} is not supported; use an exec credential plugin"
        )
    cert = _data_or_file(user, "client-certificate", folder)
    key = _data_or_file(user, "client-key", folder)
    plugin = None
    if user.get("exec"):
        plugin = ExecPlugin.from_config(user["exec"], folder, cluster)
    password = user.get("password")
    return {
        "client_cert": (cert, key) if cert and key else None,
        "token": user.get("token") or None,
        "token_file": _file(user.get("tokenFile"), folder),
        "basic": (str(user["username"]), str(password or "")) if user.get("username") else None,
        "plugin": plugin,
    }


def load_api_access(kube_context: str | None, namespace: str | None) -> ApiAccess:
    """Read kubeconfig (merged ``KUBECONFIG``) for ``kube_context`` (None: current one).

    Raises TransportError with one line when there is no usable kubeconfig.
    """
    try:
        merged = _merge(kubeconfig_paths())
        name = kube_context or merged.current
        if kube_context is not None and kube_context not in merged.contexts:
            names = ", ".join(merged.contexts) or "none"
            raise TransportError(
                f"kube context {kube_context!r} not found in kubeconfig (contexts: {names})"
            )
        if not name or name not in merged.contexts:
            raise ValueError("no current context is set (kubectl config use-context NAME)")
        context = merged.contexts[name]
        cluster_name, user_name = str(context.get("cluster")), context.get("user")
        if cluster_name not in merged.clusters:
            raise ValueError(f"context {name!r} names cluster {cluster_name!r}, which is not there")
        cluster, cluster_dir = merged.clusters[cluster_name]
        user, user_dir = merged.users.get(str(user_name), ({}, cluster_dir))
        settings = _cluster_settings(cluster, cluster_dir)
        settings.update(_user_settings(user, user_dir, cluster))
    except TransportError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TransportError(f"cannot load kubeconfig: {_first_line(exc)}") from exc
    except Exception as exc:  # a YAML syntax error (ruamel's own exception types)
        raise TransportError(f"cannot load kubeconfig: {_first_line(exc)}") from exc
    return ApiAccess(
        namespace=namespace or context.get("namespace") or "default", context=name, **settings
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
