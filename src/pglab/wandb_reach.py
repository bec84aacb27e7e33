"""Can this machine reach the W&B server? One bounded HTTP request, standard library only.

Why it exists: with an API key configured, an online ``wandb.init`` on a machine without a
network (an offline compute node, a firewalled cluster) retries until its whole init
timeout has passed before it fails (measured: +20 s on a 7 s run). Asking the server
once, with a short total deadline, lets the run go offline in a few seconds instead, and
says why.

The verdict: any HTTP answer (even 401 or 404) means reachable — wandb itself then
judges the key. No connection, no name resolution, no answer within the deadline, or an
answer that is not HTTP means unreachable. A proxy's 502 / 504 means the proxy answered
but could not reach the server behind it, so it counts as unreachable too.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DEFAULT_WANDB_BASE_URL = "https://api.wandb.ai"  # when wandb's own settings cannot be read
REACH_TIMEOUT_S = 3.0  # the whole check: DNS, connect, TLS and the first answer line
GATEWAY_FAILURES = (502, 504)  # a proxy's "the server behind me did not answer"


@dataclass(frozen=True)
class Endpoint:
    """Where wandb will send its requests: its base URL and the proxies it will use."""

    base_url: str
    proxies: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True

    @property
    def host(self) -> str:
        """``host`` or ``host:port``, as shown to the user."""
        return urlsplit(self.base_url).netloc or self.base_url


@dataclass(frozen=True)
class Reach:
    """The check's verdict. ``reason`` completes "W&B host <host> ..." in a sentence."""

    endpoint: Endpoint
    reachable: bool
    reason: str
    seconds: float

    def sentence(self) -> str:
        """E.g. ``W&B host api.wandb.ai did not answer within 3 s (timed out)``."""
        return f"W&B host {self.endpoint.host} {self.reason}"


def wandb_endpoint() -> Endpoint:
    """The base URL and proxies ``wandb.init`` will use, read the way wandb reads them.

    wandb's process-wide settings (its settings file, then ``WANDB_*`` variables, loaded
    once per process) are the ones ``wandb.init`` uses; ``wandb.Settings()`` alone would
    miss ``WANDB_BASE_URL``. Reading them starts no wandb service.
    """
    try:
        from wandb.sdk import wandb_setup

        settings = wandb_setup.singleton().settings
    except Exception:  # an old or broken wandb: the classic host, the environment's proxies
        return Endpoint(DEFAULT_WANDB_BASE_URL)
    proxies = {"http": settings.http_proxy, "https": settings.https_proxy}
    return Endpoint(
        base_url=str(settings.base_url),
        proxies={k: str(v) for k, v in proxies.items() if v},
        verify_tls=not settings.insecure_disable_ssl,
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an HTTP answer already; following it could only add waiting."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(endpoint: Endpoint) -> urllib.request.OpenerDirector:
    """urllib with the environment's proxies (and ``NO_PROXY``), wandb's over them."""
    context = ssl.create_default_context()
    if not endpoint.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    proxies = {**urllib.request.getproxies(), **endpoint.proxies}
    return urllib.request.build_opener(
        urllib.request.ProxyHandler(proxies), urllib.request.HTTPSHandler(context=context), _NoRedirect()
    )


def _ask(endpoint: Endpoint, timeout_s: float) -> tuple[bool, str]:
    """One ``HEAD`` request (every socket step bounded by ``timeout_s``): (reachable, reason)."""
    request = urllib.request.Request(endpoint.base_url, method="HEAD", headers={"User-Agent": "pglab"})
    try:
        with _opener(endpoint).open(request, timeout=timeout_s) as answer:
            return True, f"answered HTTP {answer.status}"
    except urllib.error.HTTPError as err:  # 401, 404, 3xx...: an HTTP answer
        if err.code in GATEWAY_FAILURES:
            return False, f"is behind a gateway that answered HTTP {err.code} (it could not reach the server)"
        return True, f"answered HTTP {err.code}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        cause = err.reason if isinstance(err, urllib.error.URLError) else err
        if isinstance(cause, ssl.SSLCertVerificationError):  # it spoke TLS; wandb trusts its own CAs
            return True, f"answered TLS with a certificate this Python does not trust ({cause.verify_message})"
        return False, _why_unreachable(cause, timeout_s)


def _timed_out(timeout_s: float) -> str:
    return f"did not answer within {timeout_s:g} s (timed out)"


def _why_unreachable(cause: BaseException | str, timeout_s: float) -> str:
    """The reason, in words a user can act on, for a request that got no HTTP answer."""
    if isinstance(cause, TimeoutError):  # socket.timeout is TimeoutError
        return _timed_out(timeout_s)
    if isinstance(cause, ConnectionRefusedError):
        return "refused the connection (nothing listens there)"
    if isinstance(cause, socket.gaierror):
        return f"does not resolve ({cause.strerror or cause})"
    if isinstance(cause, http.client.HTTPException | ssl.SSLError | ConnectionResetError | EOFError):
        return f"gave no HTTP answer ({type(cause).__name__})"
    return f"could not be reached ({cause})"


def check_reachable(endpoint: Endpoint, timeout_s: float = REACH_TIMEOUT_S) -> Reach:
    """Ask the W&B server once; the verdict comes within ``timeout_s`` whatever happens.

    Socket timeouts bound each step but not name resolution, and a server can drip bytes
    past any per-step limit, so the request runs in a daemon thread and the caller waits
    for it at most ``timeout_s`` in total; a thread still waiting is left to end on its
    own socket timeout.
    """
    verdict: list[tuple[bool, str]] = []
    worker = threading.Thread(
        target=lambda: verdict.append(_ask(endpoint, timeout_s)), name="pglab-wandb-reach", daemon=True
    )
    started = time.monotonic()
    worker.start()
    worker.join(timeout_s)
    seconds = time.monotonic() - started
    reachable, reason = verdict[0] if verdict else (False, _timed_out(timeout_s))
    return Reach(endpoint, reachable, reason, seconds)
