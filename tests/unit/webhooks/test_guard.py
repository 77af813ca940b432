"""The SSRF guard refuses every spelling of an internal target and lets public ones through."""

from __future__ import annotations

import ipaddress

import pytest

from novita_gpu.kit.settings import Settings
from novita_gpu.webhooks.guard import (
    UnsafeWebhookTarget,
    WebhookPolicy,
    is_forbidden_ip,
    validate_webhook_url,
)

STRICT = WebhookPolicy()

# (url, words the refusal must contain)
HOSTILE: list[tuple[str, str]] = [
    # loopback, every spelling
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://127.255.255.254/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://0177.0000.0000.0001/", "loopback"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://0X7F.0X0.0X0.0X1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0177.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://%31%32%37.0.0.1/", "loopback"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "loopback"),  # fullwidth digits
    ("http://127。0。0。1/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[64:ff9b::127.0.0.1]/", "loopback"),
    ("http://[2002:7f00:1::]/", "loopback"),
    ("http://localhost/", "loopback host name"),
    ("http://LOCALHOST./", "loopback host name"),
    ("http://api.localhost/", "loopback host name"),
    ("http://127.0.0.1#@example.com", "loopback"),
    # unspecified
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    # private
    ("http://10.0.0.1/", "private"),
    ("http://10.1/", "private"),
    ("http://167772161/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://0xc0.0xa8.1.1/", "private"),
    ("http://[::10.0.0.1]/", "private"),
    ("http://[64:ff9b::10.0.0.1]/", "private"),
    ("http://[2002:c0a8:0101::1]/", "private"),
    ("http://[fd00::1]/", "unique local"),
    ("http://[fc00::1]/", "unique local"),
    # link-local and cloud metadata
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://2852039166/", "link-local"),
    ("http://[0:0:0:0:0:ffff:169.254.169.254]/", "link-local"),
    ("http://[::ffff:a9fe:a9fe]/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://metadata/", "metadata"),
    ("http://instance-data/", "metadata"),
    # other non-public ranges
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.100.100.200/", "carrier-grade NAT"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://192.0.2.1/", "documentation"),
    ("http://[2001:db8::1]/", "documentation"),
    ("http://[fec0::1]/", "site-local"),
    # names that only resolve locally
    ("http://redis:6379/", "single-label"),
    ("http://db.internal/", "private-use suffix"),
    ("http://printer.local/", "private-use suffix"),
    # credentials and parser tricks
    ("http://example.com@127.0.0.1/", "credentials"),
    ("http://user:pass@example.com/", "credentials"),
    ("http://example.com\\@127.0.0.1/", "backslash"),
    ("http://127.0.0.1\t/", "control characters"),
    ("http://1.2.3.4.5/", "not one"),
    ("http://1.2.3.08/", "not one"),
    ("http://256.0.0.1/", "not one"),
    ("http://[127.0.0.1]/", "not a valid IPv6"),
    ("http://[::1/", "malformed"),
    ("http://%65xample.com/", "percent-encoded"),
    ("http://example.com:0/", "port"),
    ("http://example.com:99999/", "port"),
    ("http://example.com:80x/", "port"),
    ("http:///path", "no host"),
    ("http:example.com", "must start with"),
    ("//example.com/", "must start with"),
    # schemes
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme 'gopher'"),
    ("ftp://example.com/", "scheme 'ftp'"),
    ("dict://127.0.0.1:11211/", "scheme 'dict'"),
    ("ws://example.com/", "scheme 'ws'"),
    ("javascript:alert(1)", "must start with"),
    # public literals written unusually (parsers disagree on these)
    ("http://134744072/", "usual form, 8.8.8.8"),
    ("http://[2606:4700::1111%25eth0]/", "zone ids"),
]


@pytest.mark.parametrize(("url", "reason"), HOSTILE)
def test_hostile_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(UnsafeWebhookTarget) as refused:
        validate_webhook_url(url, STRICT)
    assert reason.lower() in str(refused.value).lower()
    assert isinstance(refused.value, ValueError)


def test_the_hostile_table_is_large() -> None:
    assert len(HOSTILE) >= 40


ALLOWED: list[tuple[str, WebhookPolicy]] = [
    ("https://example.com/hooks/novita", STRICT),
    ("http://example.com:8080/hook?token=abc#frag", STRICT),
    ("HTTPS://Example.COM./hook", STRICT),
    ("https://hooks.slack.com/services/T000/B000/XXXX", STRICT),
    ("https://exämple.com/", STRICT),
    ("https://under_score.example.com/", STRICT),
    ("http://8.8.8.8/", STRICT),
    ("http://1.1.1.1:443/", STRICT),
    ("http://[2606:4700:4700::1111]/", STRICT),
    ("http://[::ffff:8.8.8.8]/", STRICT),
    ("http://[2002:808:808::1]/", STRICT),
    ("http://127.0.0.1:3000/hook", WebhookPolicy(allow_loopback=True)),
    ("http://localhost:3000/hook", WebhookPolicy(allow_loopback=True)),
    ("http://[::1]:3000/hook", WebhookPolicy(allow_loopback=True)),
    ("http://[::ffff:127.0.0.1]/", WebhookPolicy(allow_loopback=True)),
    ("http://receiver:8080/hook", WebhookPolicy(allow_hosts=frozenset({"Receiver"}))),
    ("http://hooks.internal/x", WebhookPolicy(allow_hosts=frozenset({"hooks.internal."}))),
    ("http://10.0.0.5/hook", WebhookPolicy(allow_hosts=frozenset({"10.0.0.5"}))),
    ("http://10.20.30.40/hook", WebhookPolicy(allow_networks=(ipaddress.ip_network("10.0.0.0/8"),))),
    ("http://[fd12::7]/", WebhookPolicy(allow_networks=(ipaddress.ip_network("fd12::/16"),))),
    ("http://[::ffff:10.1.2.3]/", WebhookPolicy(allow_networks=(ipaddress.ip_network("10.0.0.0/8"),))),
    ("http://169.254.169.254/", WebhookPolicy(allow_networks=(ipaddress.ip_network("169.254.0.0/16"),))),
]


@pytest.mark.parametrize(("url", "policy"), ALLOWED)
def test_allowed_urls_are_returned_unchanged(url: str, policy: WebhookPolicy) -> None:
    assert validate_webhook_url(url, policy) == url


def test_allowed_networks_never_open_loopback() -> None:
    policy = WebhookPolicy(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    with pytest.raises(UnsafeWebhookTarget, match="WEBHOOK_ALLOW_LOOPBACK"):
        validate_webhook_url("http://127.0.0.1/", policy)


def test_metadata_names_stay_refused_when_loopback_is_allowed() -> None:
    with pytest.raises(UnsafeWebhookTarget, match="metadata"):
        validate_webhook_url("http://metadata.google.internal/", WebhookPolicy(allow_loopback=True))


def test_allowed_host_must_be_written_plainly() -> None:
    policy = WebhookPolicy(allow_hosts=frozenset({"receiver"}))
    with pytest.raises(UnsafeWebhookTarget):
        validate_webhook_url("http://%72eceiver/", policy)


def test_overlong_urls_are_refused() -> None:
    url = "https://example.com/" + "a" * 2048
    with pytest.raises(UnsafeWebhookTarget, match="2048"):
        validate_webhook_url(url, STRICT)
    assert validate_webhook_url(url[:2048], STRICT) == url[:2048]


def test_refusals_never_echo_credentials() -> None:
    with pytest.raises(UnsafeWebhookTarget) as refused:
        validate_webhook_url("https://admin:hunter2-secret@example.com/", STRICT)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.9.8.7", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.1.1", "carrier-grade NAT"),
        ("0.1.2.3", "unspecified"),
        ("192.0.0.170", "IETF protocol"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1%eth0", "link-local"),
        ("fd00::1", "unique local"),
        ("::ffff:192.168.0.1", "IPv4-mapped"),
        ("::ffff:0:10.0.0.1", "IPv4-translated"),
        ("64:ff9b::169.254.169.254", "NAT64"),
        ("2002:a9fe:a9fe::", "6to4"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("100::1", "discard"),
    ],
)
def test_is_forbidden_ip_names_the_reason(address: str, reason: str) -> None:
    found = is_forbidden_ip(ipaddress.ip_address(address), STRICT)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_dialable(address: str) -> None:
    assert is_forbidden_ip(ipaddress.ip_address(address), STRICT) is None


def test_policy_from_settings() -> None:
    settings = Settings(
        novita_api_key="key",
        webhook_allow_hosts="Hooks.Internal, receiver",
        webhook_allow_networks="10.0.0.0/8,fd00::/8",
        webhook_allow_loopback=None,
    )
    policy = WebhookPolicy.from_settings(settings)
    assert policy.allow_loopback is False  # not in emulator mode
    assert policy.allow_hosts == frozenset({"hooks.internal", "receiver"})
    assert policy.allow_networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert WebhookPolicy.from_settings(Settings(novita_api_key=None)).allow_loopback is True
