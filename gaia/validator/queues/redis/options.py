"""``redis[s]://[user:password@]host:port/db?queue=NAME&...``: parsing and validation.

``redis://`` is plain TCP; ``rediss://`` is TLS on every connection the queue makes (the server's
``tls-port``). Query parameters (all optional); anything else in the query is refused:

======================  ==========  ====================================================
``queue``               default     queue name; namespaces every key (``gaia:{NAME}:...``)
``result_ttl``          86400       seconds succeeded/cancelled jobs are kept after they finish
                                    (then the reaper deletes them)
``dead_ttl``            (keep)      seconds dead jobs are kept; by default until requeued
``retry_for``           30          seconds a call keeps reconnecting (with backoff) before
                                    failing
``timeout``             30          seconds a single command may take before the connection is
                                    dropped
======================  ==========  ====================================================

TLS options, ``rediss://`` only (on ``redis://`` they are refused); file paths are read when the
queue opens, and a missing one is an error naming it (see :mod:`.tls`):

======================  ==========  ====================================================
``ssl_ca_certs``        (system)    PEM bundle of the CAs trusted to sign the server's
                                    certificate; when given, only these are trusted
``ssl_certfile``        (none)      PEM client certificate, for servers with
                                    ``tls-auth-clients yes``; needs ``ssl_keyfile``
``ssl_keyfile``         (none)      PEM private key of ``ssl_certfile``; needs it
``ssl_cert_reqs``       required    ``required``: verify the server's certificate; ``none``:
                                    encrypt without verifying (anyone in the path can pose
                                    as the server: for tests only)
``ssl_check_hostname``  true        ``true``: the URL's host must be a name (or IP address)
                                    in the server's certificate; ``false``: any name will do.
                                    Default ``false`` with ``ssl_cert_reqs=none``
======================  ==========  ====================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from gaia.validator.queues.redis.keys import QueueKeys
from gaia.validator.queues.redis.tls import TLS_OPTIONS, TLSOptions, parse_tls_options

DEFAULT_RESULT_TTL = 86_400.0
SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class RedisOptions:
    server_url: str
    queue: str = "default"
    result_ttl: float = DEFAULT_RESULT_TTL
    dead_ttl: float | None = None
    retry_for: float = 30.0
    timeout: float = 30.0
    tls: TLSOptions | None = None
    """Set for ``rediss://`` (then every connection uses TLS), None for ``redis://``."""

    @property
    def keys(self) -> QueueKeys:
        return QueueKeys(self.queue)


def _seconds(name: str, *, zero_ok: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"redis URL option {name}={text!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            bound = ">= 0" if zero_ok else "> 0"
            raise ValueError(f"redis URL option {name}={text!r} must be a finite number {bound}")
        return value

    return parse


def _queue_name(text: str) -> str:
    QueueKeys(text)  # validates
    return text


_PARSERS: dict[str, Callable[[str], object]] = {
    "queue": _queue_name,
    "result_ttl": _seconds("result_ttl", zero_ok=False),
    "dead_ttl": _seconds("dead_ttl", zero_ok=False),
    "retry_for": _seconds("retry_for", zero_ok=True),
    "timeout": _seconds("timeout", zero_ok=False),
}


def parse_redis_url(url: str) -> RedisOptions:
    """Split ``url`` into the server URL redis-py connects to and the queue's options."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"redis queue URL must start with redis:// or rediss:// (TLS), "
            f"got {display_url(url)!r}"
        )
    if not parts.hostname:
        raise ValueError(f"redis queue URL {display_url(url)!r} names no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(
            f"redis queue URL path must be a database number such as /0, got {parts.path!r}"
        )
    values: dict[str, object] = {}
    tls_values: dict[str, str] = {}
    for name, text in parse_qsl(parts.query, keep_blank_values=True):
        if name in values or name in tls_values:
            raise ValueError(f"redis URL option {name!r} is given twice")
        if name in TLS_OPTIONS:
            if parts.scheme != "rediss":
                raise ValueError(
                    f"redis URL option {name} is a TLS option: use a rediss:// URL (a "
                    f"redis:// URL connects without TLS)"
                )
            tls_values[name] = text
            continue
        parser = _PARSERS.get(name)
        if parser is None:
            known = ", ".join(sorted([*_PARSERS, *TLS_OPTIONS]))
            raise ValueError(f"unknown redis URL option {name!r}; known options: {known}")
        values[name] = parser(text)
    if parts.scheme == "rediss":
        values["tls"] = parse_tls_options(tls_values)
    server_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return RedisOptions(server_url=server_url, **values)  # type: ignore[arg-type]


def display_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
