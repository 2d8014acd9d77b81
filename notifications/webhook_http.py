"""
Sending one webhook request: the signature, the address check (SSRF) and the HTTP POST.

The host is resolved once per request and every address it resolves to is checked; the
connection then goes to a checked address (the name is kept for Host and TLS), so a DNS answer
that changes between the check and the connection (rebinding) cannot reach another address.
Redirects are never followed.
"""
import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

SIGNATURE_HEADER = "X-Messaging-Signature"
USER_AGENT = "messaging_app-webhooks/1"
# Bytes of a receiver's answer read (and then dropped): enough to finish the exchange.
MAX_RESPONSE_BYTES = 64 * 1024


class AddressRefused(Exception):
    """The URL may not be delivered to (scheme, or an address that is not public)."""


@dataclass
class Outcome:
    """One attempt: ok for a 2xx answer. Every failure (4xx included: the receiver may be fixed) is retried."""

    ok: bool
    response_code: int | None = None
    error: str = ""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Messaging-Signature value: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (docs/webhooks.md): the signature matches and is at most `tolerance` seconds old."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def check_url(url: str, *, allow_http: bool | None = None, allow_private: bool | None = None) -> None:
    """
    Scheme and literal addresses, at registration (the host's addresses are checked at send time).
    allow_http / allow_private default to WEBHOOKS_ALLOW_HTTP / WEBHOOKS_ALLOW_PRIVATE (push passes its own).
    """
    allow_http = settings.WEBHOOKS_ALLOW_HTTP if allow_http is None else allow_http
    allow_private = settings.WEBHOOKS_ALLOW_PRIVATE if allow_private is None else allow_private
    parts = urlsplit(url)
    allowed = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in allowed:
        raise AddressRefused("Webhook URLs must use https.")
    if not parts.hostname:
        raise AddressRefused("The URL has no host.")
    if parts.username or parts.password:
        raise AddressRefused("Credentials in the URL are not accepted: authenticate with the signature.")
    if allow_private:
        return
    if parts.hostname.lower() == "localhost" or parts.hostname.lower().endswith(".localhost"):
        raise AddressRefused("Webhooks may not deliver to this host: it is not a public address.")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    if not is_public(address):
        raise AddressRefused("Webhooks may not deliver to this host: it is not a public address.")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int, *, allow_private: bool | None = None) -> str:
    """One address of the host that may be delivered to; AddressRefused if any of them may not."""
    allow_private = settings.WEBHOOKS_ALLOW_PRIVATE if allow_private is None else allow_private
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressRefused(f"The host does not resolve ({exc.strerror}).") from None
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address.split("%", 1)[0])):
                raise AddressRefused(f"The host resolves to {address}, which is not a public address.")
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST the body; ok for any 2xx answer. Never raises for the network or the receiver."""
    try:
        check_url(url)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve(parts.hostname, port)
    except (AddressRefused, ValueError) as exc:
        return Outcome(ok=False, error=f"refused: {exc}"[:300])
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(parts.hostname, port, address=address, timeout=settings.WEBHOOKS_TIMEOUT)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers,
        })
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        code = response.status
    except TimeoutError:
        return Outcome(ok=False, error="timeout: no answer within WEBHOOKS_TIMEOUT")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(ok=False, error=f"connection: {type(exc).__name__}: {exc}"[:300])
    finally:
        connection.close()
    if 200 <= code < 300:
        return Outcome(ok=True, response_code=code)
    return Outcome(ok=False, response_code=code, error=f"HTTP {code}")
