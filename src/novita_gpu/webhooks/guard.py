"""SSRF guard for webhook URLs: checked when a URL is saved, and again on every connection.

Creation time (`validate_webhook_url`) parses the host the way browsers, curl and inet_aton do, so
every spelling of an internal address (decimal, octal, hex, shortened, IPv4 inside IPv6, percent- or
IDNA-encoded) is recognised and refused. Dial time (`GuardedResolver`) resolves the host itself,
refuses the connection when ANY resolved address is forbidden, then connects to the checked IP while
the Host header and TLS (SNI, certificate) keep the original name: a DNS answer that changes between
the check and the connection (DNS rebinding) cannot reach an internal address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

import idna
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from novita_gpu.kit.errors import InvalidInput

if TYPE_CHECKING:
    from novita_gpu.kit.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

MAX_URL_LENGTH = 2048

_LOOPBACK = "a loopback address"
_V4_RANGES = tuple(
    (ipaddress.IPv4Network(network), what)
    for network, what in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("127.0.0.0/8", _LOOPBACK),
        ("10.0.0.0/8", "a private address (RFC 1918)"),
        ("172.16.0.0/12", "a private address (RFC 1918)"),
        ("192.168.0.0/16", "a private address (RFC 1918)"),
        ("169.254.0.0/16", "a link-local address (where cloud metadata services live)"),
        ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
_V6_RANGES = tuple(
    (ipaddress.IPv6Network(network), what)
    for network, what in (
        ("::/128", "the unspecified address"),
        ("::1/128", _LOOPBACK),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("100::/64", "a discard-only address"),
        ("2001:2::/48", "a benchmarking address"),
        ("2001::/32", "a Teredo tunnel address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_PRIVATE_SUFFIXES = ("internal", "local", "localdomain", "home.arpa")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HEX_PART = re.compile(r"0x[0-9a-f]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"0|[1-9][0-9]*")


class UnsafeWebhookTarget(ValueError):
    """A webhook URL or address we refuse to call; the message says why (never a secret)."""


@dataclass(frozen=True)
class WebhookPolicy:
    """What the guard lets through beyond public addresses.

    `allow_hosts` are exact host names (case-insensitive) trusted whatever they resolve to;
    `allow_networks` allow forbidden addresses they contain, except loopback, which only
    `allow_loopback` allows.
    """

    allow_loopback: bool = False
    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_hosts", frozenset(_host_key(host) for host in self.allow_hosts))

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        return cls(
            allow_loopback=settings.loopback_webhooks_allowed,
            allow_hosts=frozenset(settings.webhook_allow_hosts),
            allow_networks=tuple(
                ipaddress.ip_network(network, strict=False) for network in settings.webhook_allow_networks
            ),
        )

    def host_allowed(self, host: str) -> bool:
        return _host_key(host) in self.allow_hosts


def _host_key(host: str) -> str:
    key = host.strip().strip("[]").lower()
    if not key.isascii():
        key = idna.encode(key, uts46=True).decode("ascii")
    return key.removesuffix(".")


def is_forbidden_ip(ip: IPAddress, policy: WebhookPolicy) -> str | None:
    """Why we must not dial `ip` under `policy`, or None when it may be dialled."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(int(ip))
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    target: IPAddress = embedded[0] if embedded else ip
    category = _category(target)
    if category is None:
        return None
    if category == _LOOPBACK:
        if policy.allow_loopback:
            return None
    elif any(target in network or ip in network for network in policy.allow_networks):
        return None
    if embedded:
        return f"{ip} embeds {target} ({embedded[1]}), which is {category}"
    return f"{ip} is {category}"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries (and routes to), if it is one of those forms."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return low32, "NAT64"
    if ip in _V4_TRANSLATED:
        return low32, "IPv4-translated"
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return low32, "IPv4-compatible"
    return None


def _category(ip: IPAddress) -> str | None:
    ranges: Iterable[tuple[IPNetwork, str]] = _V4_RANGES if ip.version == 4 else _V6_RANGES
    for network, what in ranges:
        if ip in network:
            return what
    if not ip.is_global:
        return "not a publicly routable address"
    return None


def _hint(reason: str) -> str:
    if _LOOPBACK in reason or "loopback host" in reason:
        return "set WEBHOOK_ALLOW_LOOPBACK=true to allow loopback targets"
    if reason.endswith("is a cloud metadata service"):
        return "cloud metadata services are not webhook targets"
    return "allow it with WEBHOOK_ALLOW_HOSTS (a host name) or WEBHOOK_ALLOW_NETWORKS (a network)"


def _refuse(reason: str) -> UnsafeWebhookTarget:
    return UnsafeWebhookTarget(f"Webhook URL refused: {reason}; {_hint(reason)}.")


@dataclass(frozen=True)
class _Host:
    written: str
    name: str  # ASCII, lower-case, without the trailing dot
    address: IPAddress | None
    percent_encoded: bool


def checked_webhook_url(url: str | None, policy: WebhookPolicy) -> str | None:
    """A webhook URL given in a request body (an instance's, a budget's), checked as `validate_webhook_url`
    does; a refusal is the request's fault: InvalidInput on the `webhookUrl` field."""
    if url is None:
        return None
    try:
        return validate_webhook_url(url, policy)
    except UnsafeWebhookTarget as exc:
        raise InvalidInput("INVALID_WEBHOOK_URL", str(exc), field="webhookUrl") from exc


def validate_webhook_url(url: str, policy: WebhookPolicy) -> str:
    """Check a webhook URL when it is saved; returns it unchanged or raises UnsafeWebhookTarget.

    Host names that are not address literals are accepted (they may not resolve yet), except names
    that can only be local (localhost, metadata services, single labels, private-use suffixes);
    what they resolve to is checked on every connection.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookTarget(f"Webhook URL refused: longer than {MAX_URL_LENGTH} characters.")
    if any(char <= " " or char in "\x7f\\" for char in url):
        raise UnsafeWebhookTarget("Webhook URL refused: it contains spaces, control characters or backslashes.")
    authority = _authority(url)
    if "@" in authority:
        raise UnsafeWebhookTarget(
            "Webhook URL refused: credentials in the URL (user:password@) are not allowed; "
            "receivers authenticate deliveries with the webhook signature instead."
        )
    host = _parse_host(_host_part(authority))
    if not (policy.host_allowed(host.name) and not host.percent_encoded):
        _check_host(host, policy)
    _check_client_agrees(url, host)
    return url


def _authority(url: str) -> str:
    match = _SCHEME.match(url)
    if match is None or not url[match.end() :].startswith("//"):
        raise UnsafeWebhookTarget("Webhook URL refused: it must start with http:// or https://.")
    scheme = match.group(1).lower()
    if scheme not in ("http", "https"):
        raise UnsafeWebhookTarget(
            f"Webhook URL refused: the scheme {scheme[:20]!r} is not allowed, only http and https."
        )
    return re.split(r"[/?#]", url[match.end() + 2 :], maxsplit=1)[0]


def _host_part(authority: str) -> str:
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = (authority[: end + 1], authority[end + 1 :]) if end > 0 else (authority, "")
        if end < 0 or (rest and not rest.startswith(":")):
            raise UnsafeWebhookTarget("Webhook URL refused: the bracketed IPv6 host is malformed.")
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = authority.partition(":")
        port = port_text if colon else None
    if port is not None and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
        raise UnsafeWebhookTarget("Webhook URL refused: the port is not a number from 1 to 65535.")
    if not host:
        raise UnsafeWebhookTarget("Webhook URL refused: it has no host.")
    return host


def _parse_host(written: str) -> _Host:
    """Decode the host as a browser would: percent-decoding, IDNA (UTS #46), then IPv4 number forms."""
    percent_encoded = "%" in written
    if written.startswith("["):
        try:
            address = ipaddress.IPv6Address(unquote(written[1:-1]))
        except ValueError:
            raise UnsafeWebhookTarget("Webhook URL refused: the bracketed host is not a valid IPv6 address.") from None
        return _Host(written, str(address), address, percent_encoded)
    text = unquote(written)
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise UnsafeWebhookTarget(
                "Webhook URL refused: the host is not a valid internationalised domain name."
            ) from None
    name = text.lower().removesuffix(".")
    if not name:
        raise UnsafeWebhookTarget("Webhook URL refused: it has no host.")
    return _Host(written, name, _parse_ipv4(name), percent_encoded)


def _parse_ipv4(name: str) -> ipaddress.IPv4Address | None:
    """The WHATWG/inet_aton reading: 1 to 4 parts, each decimal, octal (0...) or hex (0x...)."""
    parts = name.split(".")
    if not _NUMERIC_LABEL.fullmatch(parts[-1]):
        return None
    invalid = UnsafeWebhookTarget("Webhook URL refused: the host looks like an IPv4 address but is not one.")
    if len(parts) > 4:
        raise invalid
    numbers = [_ipv4_number(part, invalid) for part in parts]
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (5 - len(numbers)):
        raise invalid
    return ipaddress.IPv4Address(last + sum(number << (8 * (3 - i)) for i, number in enumerate(head)))


def _ipv4_number(part: str, invalid: UnsafeWebhookTarget) -> int:
    if _HEX_PART.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCTAL_PART.fullmatch(part):
        return int(part, 8)
    if _DECIMAL_PART.fullmatch(part):
        return int(part)
    raise invalid


def _check_host(host: _Host, policy: WebhookPolicy) -> None:
    if host.address is not None:
        reason = is_forbidden_ip(host.address, policy)
        canonical = not host.percent_encoded and (host.address.version == 6 or host.written == str(host.address))
        if reason is not None:
            raise _refuse(reason if canonical else f"{reason} (written {host.written[:100]!r})")
        if isinstance(host.address, ipaddress.IPv6Address) and host.address.scope_id:
            raise UnsafeWebhookTarget("Webhook URL refused: IPv6 zone ids are not allowed.")
        if not canonical:
            raise UnsafeWebhookTarget(f"Webhook URL refused: write the address in its usual form, {host.address}.")
        return
    if host.percent_encoded:
        raise UnsafeWebhookTarget("Webhook URL refused: percent-encoded host names are not allowed.")
    if len(host.name) > 253 or not all(_LABEL.fullmatch(label) for label in host.name.split(".")):
        raise UnsafeWebhookTarget("Webhook URL refused: the host name is not valid.")
    reason = _forbidden_name(host.name, policy)
    if reason is not None:
        raise _refuse(reason)


def _forbidden_name(name: str, policy: WebhookPolicy) -> str | None:
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return None if policy.allow_loopback else f"{name} is a loopback host name"
    if name in _METADATA_NAMES:
        return f"{name} is a cloud metadata service"
    if "." not in name:
        return f"{name} is a single-label name, which only resolves inside a local network"
    for suffix in _PRIVATE_SUFFIXES:
        if name.endswith("." + suffix) or name == suffix:
            return f"{name} uses the private-use suffix .{suffix}"
    return None


def _check_client_agrees(url: str, host: _Host) -> None:
    """Refuse URLs that aiohttp (which will send the request) would read with a different host."""
    try:
        raw_host = URL(url).raw_host or ""
    except (ValueError, UnicodeError):
        raise UnsafeWebhookTarget("Webhook URL refused: it is not a valid URL.") from None
    if host.address is not None:
        try:
            agrees = ipaddress.ip_address(raw_host) == host.address
        except ValueError:
            agrees = False
    else:
        agrees = _host_key(raw_host) == host.name
    if not agrees:
        raise UnsafeWebhookTarget("Webhook URL refused: its host is ambiguous.")


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in resolver order, without duplicates."""
    with contextlib.suppress(ValueError):  # a literal address: no resolver (and no thread) needed
        return [ipaddress.ip_address(host.strip("[]"))]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos))


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for webhook connections: every address a name resolves to is checked, and
    aiohttp dials only what this returns, so a later DNS answer (rebinding) cannot slip past.

    Hosts written as an address never reach a resolver: `WebhookSender` checks them with
    `refuse_literal_target` before sending.
    """

    def __init__(self, policy: WebhookPolicy, resolver: Resolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver or resolve_host

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await self._resolver(host, port)
        except OSError as exc:
            raise OSError(f"could not resolve {host}") from exc
        if not addresses:
            raise OSError(f"could not resolve {host}")
        if not self._policy.host_allowed(host):
            for address in addresses:
                reason = is_forbidden_ip(address, self._policy)
                if reason is not None:
                    raise UnsafeWebhookTarget(f"refused to connect to {host}: {reason}")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing to release: resolution runs on the event loop's getaddrinfo."""


def refuse_literal_target(host: str, policy: WebhookPolicy) -> None:
    """Check a host written as an address (in any IPv4 number form) as it is about to be dialled."""
    if policy.host_allowed(host):
        return
    try:
        address: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            address = _parse_ipv4(host.lower().removesuffix("."))
        except UnsafeWebhookTarget:
            return  # not an address the client would dial as written; it refuses such hosts itself
    if address is None:
        return
    reason = is_forbidden_ip(address, policy)
    if reason is not None:
        raise UnsafeWebhookTarget(f"refused to connect to {host}: {reason}")
