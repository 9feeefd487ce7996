"""Kubernetes API access from kubeconfig, through the official ``kubernetes`` client.

Owns: :class:`ApiAccess` (API server URL, effective namespace, context name, TLS settings and
fresh auth headers) and :func:`load_api_access`. May import: the standard library, the
``kubernetes`` client and ``podsync.errors``.

The client does the kubeconfig work: merged ``KUBECONFIG`` (``a:b`` lists), the current or a
named context, CA / client certificates / ``insecure-skip-tls-verify``, static tokens and
exec-credential plugins (gke-gcloud-auth-plugin, ``aws eks get-token``, OIDC helpers) whose
tokens it refreshes through ``refresh_api_key_hook``. We only read the resulting
``Configuration``, asking it for the auth headers again before every dial so an expired
plugin token is renewed.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from podsync.errors import TransportError


@dataclass(frozen=True)
class ApiAccess:
    """How to reach one cluster as one user (one kubeconfig context)."""

    #: API server base URL, e.g. ``https://10.0.0.1:6443`` (may carry a path prefix).
    host: str
    #: Namespace to use: ``--namespace``, else the context's, else ``default``.
    namespace: str
    #: The kubeconfig context in use (what ``kubectl --context`` needs).
    context: str | None
    #: The kubernetes client's configuration (auth hooks, TLS files).
    configuration: Any
    #: A client bound to that configuration, for REST calls (CoreV1Api(api_client)).
    api_client: Any

    def auth_headers(self) -> dict[str, str]:
        """Current auth headers; runs the client's token refresh hook when one is set."""
        conf = self.configuration
        headers: dict[str, str] = {}
        try:
            settings = conf.auth_settings()
        except Exception as exc:  # an exec plugin failing on refresh
            raise TransportError(f"cannot get credentials for the Kubernetes API: {exc}") from exc
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                key = str(setting["key"])
                headers["Authorization" if key.lower() == "authorization" else key] = str(
                    setting["value"]
                )
        if "Authorization" not in headers and conf.username:
            raw = f"{conf.username}:{conf.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings of the context (None for a plain-HTTP server); built once.

        Like kubectl, a context with a CA trusts only that CA, not the system store."""
        if not self.host.startswith("https://"):
            return None
        cached = self.__dict__.get("_ssl")
        if cached is None:
            cached = self._build_ssl()
            object.__setattr__(self, "_ssl", cached)  # frozen: a cache, not state
        return cached

    def _build_ssl(self) -> ssl.SSLContext:
        conf = self.configuration
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        data = getattr(conf, "ca_cert_data", None)
        if data:
            ctx.load_verify_locations(cadata=data.decode() if isinstance(data, bytes) else data)
        elif conf.ssl_ca_cert:
            ctx.load_verify_locations(cafile=conf.ssl_ca_cert)
        else:
            ctx.load_default_certs()
        if conf.cert_file:
            ctx.load_cert_chain(conf.cert_file, conf.key_file or None)
        if not conf.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    @property
    def server_hostname(self) -> str | None:
        """``tls-server-name`` from the kubeconfig, when it overrides the URL's host."""
        name = getattr(self.configuration, "tls_server_name", None)
        return str(name) if name else None


def kubeconfig_paths() -> str:
    """``$KUBECONFIG`` (a ``:``-separated list, merged) or ``~/.kube/config``, read now: the
    client reads the variable once at import, too early for a changed environment."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _context_namespace(kube_context: str | None) -> tuple[str | None, str | None]:
    """(context name, its namespace) of ``kube_context`` or the current context."""
    contexts, active = k8s_config.list_kube_config_contexts(kubeconfig_paths())  # type: ignore[no-untyped-call]
    chosen = active
    if kube_context is not None:
        chosen = next((c for c in contexts if c.get("name") == kube_context), None)
        if chosen is None:
            names = ", ".join(str(c.get("name")) for c in contexts) or "none"
            raise TransportError(
                f"kube context {kube_context!r} not found in kubeconfig (contexts: {names})"
            )
    if not chosen:
        return kube_context, None
    ns = (chosen.get("context") or {}).get("namespace")
    return chosen.get("name"), ns


def load_api_access(kube_context: str | None, namespace: str | None) -> ApiAccess:
    """Read kubeconfig (merged ``KUBECONFIG``) for ``kube_context`` (None: current one).

    Raises TransportError with one line when there is no usable kubeconfig.
    """
    try:
        context, ctx_ns = _context_namespace(kube_context)
        api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig_paths(), context=context, persist_config=False
        )
    except TransportError:
        raise
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TransportError(f"cannot load kubeconfig: {first}") from exc
    conf = api_client.configuration
    return ApiAccess(
        host=str(conf.host).rstrip("/"),
        namespace=namespace or ctx_ns or "default",
        context=context,
        configuration=conf,
        api_client=api_client,
    )


def core_v1(access: ApiAccess) -> Any:
    """A ``CoreV1Api`` on ``access`` (for pod lists, reads, watches)."""
    return k8s_client.CoreV1Api(access.api_client)


def _api_error(access: ApiAccess, exc: Exception, what: str) -> TransportError:
    status = getattr(exc, "status", None)
    if status == 401:
        return TransportError(
            f"unauthorized: the Kubernetes API at {access.host} rejected the credentials"
        )
    if status == 403:
        return TransportError(f"forbidden: not allowed to {what}")
    if status is not None:
        reason = getattr(exc, "reason", "") or ""
        return TransportError(f"cannot {what}: HTTP {status} {reason}".rstrip())
    return TransportError(
        f"cannot connect to the Kubernetes API at {access.host}: {type(exc).__name__}"
    )


def list_pod_objects(
    access: ApiAccess, namespace: str, label_selector: str | None = None, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Pods of ``namespace`` as API JSON (blocking: call through ``asyncio.to_thread``)."""
    api = core_v1(access)
    try:
        resp = api.list_namespaced_pod(
            namespace,
            label_selector=label_selector or None,
            _preload_content=False,
            _request_timeout=timeout,
        )
        body = json.loads(resp.data)
    except Exception as exc:  # ApiException, urllib3 errors: translated at the edge
        raise _api_error(access, exc, f"list pods in namespace {namespace}") from exc
    return [dict(item) for item in body.get("items") or []]


def read_pod_object(
    access: ApiAccess, namespace: str, name: str, timeout: float = 30.0
) -> dict[str, Any] | None:
    """One pod as API JSON, None when it does not exist (blocking)."""
    api = core_v1(access)
    try:
        resp = api.read_namespaced_pod(
            name, namespace, _preload_content=False, _request_timeout=timeout
        )
        return dict(json.loads(resp.data))
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            return None
        raise _api_error(access, exc, f"read pod {namespace}/{name}") from exc
