"""TLS for ``rediss://`` queue URLs: the options, the one ``ssl.SSLContext`` they make, and how a
refused handshake is told apart from a lost connection.

The queue opens three kinds of connection (its pipelined one in :mod:`.wire`, and redis-py's
for plain commands and for blocking waits); all of them are handed the same context object,
built once when the queue opens, so they cannot disagree about what they trust or present.

A handshake the certificates refuse (the server's certificate fails verification, the server
refuses or requires a client certificate, the port does not speak TLS) is a configuration
error: it is raised at once as :class:`TLSRefused`, naming what to check, instead of being
retried like a lost connection until ``retry_for`` runs out.

This module uses only the standard library.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

CA_CERTS = "ssl_ca_certs"
CERTFILE = "ssl_certfile"
KEYFILE = "ssl_keyfile"
CERT_REQS = "ssl_cert_reqs"
CHECK_HOSTNAME = "ssl_check_hostname"
TLS_OPTIONS = (CA_CERTS, CERTFILE, KEYFILE, CERT_REQS, CHECK_HOSTNAME)

_CERT_REQS_CHOICES = {"required": True, "none": False}
_BOOLEANS = {"true": True, "false": False}

# OpenSSL reasons meaning the server turned down the certificate this client showed (or its
# absence): not a network failure, so not worth retrying.
_CLIENT_CERT_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)
# Reasons meaning the two ends cannot agree on TLS at all.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"})
_NO_COMMON_GROUND = frozenset({"TLSV1_ALERT_PROTOCOL_VERSION", "SSLV3_ALERT_HANDSHAKE_FAILURE"})


class TLSRefused(ConnectionError):
    """The TLS handshake was refused for a reason retrying cannot fix (see the message)."""


@dataclass(frozen=True)
class TLSOptions:
    """What a ``rediss://`` URL asks of TLS (defaults: verify against the system's CAs)."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    verify: bool = True
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        """The client context every connection of the queue uses (reads the files named).

        Raises ``FileNotFoundError`` naming the option and path of a missing file, and
        ``ValueError`` for a file that is not a usable certificate or key.
        """
        files = ((CA_CERTS, self.ca_certs), (CERTFILE, self.certfile), (KEYFILE, self.keyfile))
        for option, path in files:
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"redis URL option {option}: no file at {path!r}")
        if self.verify:
            try:
                context = ssl.create_default_context(cafile=self.ca_certs)
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"redis URL option {CA_CERTS}={self.ca_certs!r}: cannot load a CA "
                    f"certificate from it ({error})"
                ) from None
            context.check_hostname = self.check_hostname
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.certfile is not None:
            try:
                context.load_cert_chain(self.certfile, self.keyfile)
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"redis URL options {CERTFILE}={self.certfile!r} and {KEYFILE}="
                    f"{self.keyfile!r}: cannot load the client certificate and its key "
                    f"(PEM files of one key pair expected; {error})"
                ) from None
        return context


def parse_tls_options(values: Mapping[str, str]) -> TLSOptions:
    """The TLS options of a ``rediss://`` URL from its query values (names in TLS_OPTIONS)."""
    for name in (CA_CERTS, CERTFILE, KEYFILE):
        if name in values and not values[name].strip():
            raise ValueError(f"redis URL option {name} is empty; give the path of a PEM file")
    certfile, keyfile = values.get(CERTFILE), values.get(KEYFILE)
    if (certfile is None) != (keyfile is None):
        given, missing = (CERTFILE, KEYFILE) if keyfile is None else (KEYFILE, CERTFILE)
        raise ValueError(
            f"redis URL option {given} needs {missing} too (a client certificate and its "
            f"private key are given together)"
        )
    verify = _choice(CERT_REQS, values, _CERT_REQS_CHOICES, default=True)
    check_hostname = _choice(CHECK_HOSTNAME, values, _BOOLEANS, default=verify)
    if not verify and check_hostname:
        raise ValueError(
            f"redis URL option {CHECK_HOSTNAME}=true needs {CERT_REQS}=required (a host name "
            f"cannot be checked on a certificate that is not verified)"
        )
    if verify and not check_hostname and CA_CERTS not in values:
        raise ValueError(
            f"redis URL option {CHECK_HOSTNAME}=false needs {CA_CERTS}: against the system's "
            f"trust store it would accept any publicly trusted certificate for any host; name "
            f"the CA that signs your server's certificate"
        )
    if not verify and CA_CERTS in values:
        raise ValueError(
            f"redis URL option {CA_CERTS} is unused with {CERT_REQS}=none (nothing is "
            f"verified); drop one of them"
        )
    return TLSOptions(
        ca_certs=values.get(CA_CERTS),
        certfile=certfile,
        keyfile=keyfile,
        verify=verify,
        check_hostname=check_hostname,
    )


def tls_refusal(error: BaseException) -> str | None:
    """Why the TLS handshake behind ``error`` (or an error it was raised from) was refused, if
    it was refused for a reason retrying cannot fix; None for anything else."""
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"the server's certificate failed verification ({cause.verify_message}); "
                f"check {CA_CERTS} (the CA that signed it) and that the URL's host is a name "
                f"in the certificate"
            )
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or ""
            if reason in _CLIENT_CERT_REFUSED:
                return (
                    f"the server refused this client's certificate, or requires one ({reason});"
                    f" give {CERTFILE} and {KEYFILE} signed by a CA the server trusts"
                )
            if reason in _NOT_TLS:
                return f"the server does not speak TLS on this port ({reason}); use redis://"
            if reason in _NO_COMMON_GROUND:
                return f"the server and this client share no TLS version or cipher ({reason})"
    return None


def dropped_hint(error: BaseException) -> str:
    """A hint to add when a TLS connection kept being dropped until ``retry_for`` ran out.

    With TLS 1.3 a server checks the client's certificate after the client has finished its
    handshake and sent its first command; the server's alert then often arrives as a plain
    reset, indistinguishable from a network failure, so it is retried like one.
    """
    for cause in _causes(error):
        if isinstance(cause, (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError)):
            return (
                f" (over TLS, a server that requires a client certificate drops the connection"
                f" like this when none or an untrusted one is given: check {CERTFILE} and "
                f"{KEYFILE})"
            )
    return ""


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from or while handling, innermost last."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def _choice(
    name: str, values: Mapping[str, str], choices: Mapping[str, bool], *, default: bool
) -> bool:
    text = values.get(name)
    if text is None:
        return default
    try:
        return choices[text.strip().lower()]
    except KeyError:
        allowed = " or ".join(choices)
        raise ValueError(f"redis URL option {name}={text!r} must be {allowed}") from None
