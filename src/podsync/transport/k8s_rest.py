"""REST requests to the Kubernetes API with the standard library (``http.client``).

Owns: :func:`get_json` (one GET, JSON body), :class:`LogStream` (a followed container log),
the proxy choice (:func:`proxy_for`: kubeconfig's ``proxy-url``, else ``HTTPS_PROXY`` /
``NO_PROXY``, never for a loopback server, as kubectl does) and the translation of failures
into one-line TransportErrors. May import: the standard library, ``podsync.errors`` and
``podsync.transport.kubeconfig``. Blocking: call through ``asyncio.to_thread``.

A 401 with an exec-credential plugin runs the plugin again and retries once (the credential
may have been revoked before its stated expiry), as kubectl does.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from podsync.errors import TransportError
from podsync.transport.kubeconfig import ApiAccess

USER_AGENT = "podsync/0.1"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_for(access: ApiAccess) -> str | None:
    """The proxy URL for ``access.host`` (None: connect directly)."""
    if access.proxy_url:
        return access.proxy_url
    url = urllib.parse.urlsplit(access.host)
    host = url.hostname or ""
    if _loopback(host):
        return None
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get("https" if url.scheme == "https" else "http")


class _TlsConnection(http.client.HTTPSConnection):
    """HTTPS whose certificate check uses ``server_hostname`` (kubeconfig tls-server-name)."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, sni: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ctx)
        self._sni = sni
        self._ctx = ctx

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP, then CONNECT through a proxy if set
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._sni)


def _connection(access: ApiAccess, timeout: float) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(access.host)
    secure = url.scheme == "https"
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    proxy = proxy_for(access)
    target_host, target_port = host, port
    headers: dict[str, str] = {}
    if proxy is not None:
        purl = urllib.parse.urlsplit(proxy)
        if purl.scheme != "http":
            raise TransportError(
                f"proxy {proxy}: only http:// proxies are supported for API requests"
            )
        if purl.username:
            user = urllib.parse.unquote(purl.username)
            raw = f"{user}:{urllib.parse.unquote(purl.password or '')}"
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
        host, port = purl.hostname or "", purl.port or 80
    conn: http.client.HTTPConnection
    if secure:
        ctx = access.ssl_context()
        assert ctx is not None
        sni = access.server_hostname or target_host
        conn = _TlsConnection(host, port, ctx, sni, timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if proxy is not None:
        conn.set_tunnel(target_host, target_port, headers=headers)
    return conn


def _path(access: ApiAccess, path: str, query: Mapping[str, str] | None) -> str:
    prefix = urllib.parse.urlsplit(access.host).path.rstrip("/")
    qs = f"?{urllib.parse.urlencode(query)}" if query else ""
    return f"{prefix}{path}{qs}"


def _unreachable(access: ApiAccess, exc: BaseException) -> TransportError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"certificate verify failed: {exc.verify_message}"
    elif isinstance(exc, socket.timeout | TimeoutError):
        reason = "timed out"
    else:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return TransportError(f"cannot connect to the Kubernetes API at {access.host}: {reason}")


def status_error(access: ApiAccess, status: int, body: bytes, what: str) -> TransportError:
    """One line for a failed API request (``what`` says what we tried: "list pods ...")."""
    if status == 401:
        ctx = f" (context {access.context})" if access.context else ""
        return TransportError(
            f"unauthorized: the Kubernetes API at {access.host} rejected the credentials{ctx}"
        )
    message = ""
    try:
        message = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()[:200]
    if status == 403:
        because = f" ({message})" if message else ""
        return TransportError(f"forbidden: not allowed to {what}{because}")
    reason = http.client.responses.get(status, "")
    detail = f": {message}" if message else ""
    return TransportError(f"cannot {what}: HTTP {status} {reason}{detail}".rstrip())


def _open(
    access: ApiAccess, path: str, query: Mapping[str, str] | None, timeout: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET with fresh credentials; one retry after a 401 when a plugin can renew them."""
    for attempt in (0, 1):
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        headers.update(access.auth_headers())
        conn = _connection(access, timeout)
        try:
            conn.request("GET", _path(access, path, query), headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            conn.close()
            raise _unreachable(access, exc) from exc
        if resp.status == 401 and attempt == 0 and access.plugin is not None:
            conn.close()
            access.refresh()
            continue
        return conn, resp
    raise AssertionError("unreachable")  # pragma: no cover


def get_json(
    access: ApiAccess,
    path: str,
    what: str,
    query: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any] | None:
    """GET ``path`` as JSON; None on 404; TransportError (one line) otherwise."""
    conn, resp = _open(access, path, query, timeout)
    try:
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise _unreachable(access, exc) from exc
    finally:
        conn.close()
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise status_error(access, resp.status, body, what)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise TransportError(f"cannot {what}: the API answered with no JSON") from exc
    if not isinstance(data, dict):
        raise TransportError(f"cannot {what}: unexpected answer from the API")
    return data


class LogStream:
    """A container's log, followed (``kubectl logs -f``); ``read`` blocks, ``close`` from any
    thread ends it."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self._conn = conn
        self._resp = resp

    def read(self, n: int = 4096) -> bytes:
        """Up to ``n`` bytes as soon as some arrive; b"" at the end (or after close)."""
        try:
            return self._resp.read1(n)
        except (OSError, ValueError, http.client.HTTPException):
            return b""

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()


def open_log_stream(
    access: ApiAccess, namespace: str, pod: str, container: str, tail_lines: int = 100
) -> LogStream:
    """Follow ``container``'s log in ``pod`` (the last ``tail_lines`` first)."""
    ns, name = (urllib.parse.quote(x, safe="") for x in (namespace, pod))
    query = {"container": container, "follow": "true", "tailLines": str(tail_lines)}
    # No read timeout: a quiet container logs nothing for hours.
    conn, resp = _open(access, f"/api/v1/namespaces/{ns}/pods/{name}/log", query, 30.0)
    if resp.status != 200:
        body = resp.read()
        conn.close()
        raise status_error(access, resp.status, body, f"read the log of pod {namespace}/{pod}")
    if conn.sock is not None:
        conn.sock.settimeout(None)
    return LogStream(conn, resp)
