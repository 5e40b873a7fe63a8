"""The SSRF guard's decisions: which addresses a delivery may connect to.

A destination comes from a customer's sites file; a miss here lets a lead
delivery reach this host, the cluster network or the cloud metadata service.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from services.delivery.guarded_http import (
    ForbiddenAddress,
    GuardedResolver,
    guarded_socket_factory,
    literal_refusal,
)
from services.delivery.ssrf import ALLOW_ENV, AddressGuard, classify, parse_networks

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.10.1", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.254", "shared address space (CGNAT)"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:127.0.0.1", "IPv4 loopback inside IPv6"),
    ("::ffff:10.1.2.3", "IPv4 private inside IPv6"),
    ("64:ff9b::a00:1", "IPv4 private inside IPv6"),  # NAT64 of 10.0.0.1
    ("2002:c0a8:101::1", "IPv4 private inside IPv6"),  # 6to4 of 192.168.1.1
    ("fec0::1", "site-local"),
    ("192.0.2.10", "private"),  # documentation
    ("198.18.0.1", "private"),  # benchmarking
    ("2001:db8::1", "private"),  # documentation
]
ALLOWED = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_addresses(address: str, reason: str) -> None:
    assert classify(ipaddress.ip_address(address)) == reason
    assert AddressGuard().refusal(address) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is None
    assert AddressGuard().refusal(address) is None


def test_the_allowlist_lets_its_networks_through_and_no_more() -> None:
    guard = AddressGuard(parse_networks("127.0.0.0/8, 10.1.0.0/16 ::1"))
    for ok in ("127.0.0.1", "127.9.9.9", "10.1.2.3", "::1", "::ffff:127.0.0.1"):
        assert guard.refusal(ok) is None, ok
    assert guard.refusal("10.2.0.1") == "10.2.0.1 is private"
    assert guard.refusal("192.168.0.1") == "192.168.0.1 is private"


def test_metadata_is_refused_even_when_allowlisted() -> None:
    guard = AddressGuard(parse_networks("169.254.0.0/16 fd00::/8 0.0.0.0/0"))
    assert guard.refusal("169.254.169.254") == "169.254.169.254 is cloud metadata"
    assert guard.refusal("fd00:ec2::254") == "fd00:ec2::254 is cloud metadata"
    assert guard.refusal("169.254.1.1") is None


def test_one_refused_address_refuses_the_name() -> None:
    assert AddressGuard().first_refusal(["8.8.8.8", "10.0.0.1"]) == "10.0.0.1 is private"
    assert AddressGuard().first_refusal(["8.8.8.8", "1.1.1.1"]) is None


def test_a_scoped_or_bad_address_string() -> None:
    assert AddressGuard().refusal("fe80::1%eth0") == "fe80::1 is link-local"
    assert AddressGuard().refusal("not-an-ip") == "'not-an-ip' is not an IP address"


def test_the_allowlist_setting() -> None:
    assert AddressGuard.from_env({}).allow == ()
    guard = AddressGuard.from_env({ALLOW_ENV: "127.0.0.1/32"})
    assert guard.allow == (ipaddress.ip_network("127.0.0.1/32"),)
    with pytest.raises(ValueError, match=f"{ALLOW_ENV}: 'localhost' is not an IP network"):
        AddressGuard.from_env({ALLOW_ENV: "127.0.0.1, localhost"})


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1 is loopback"),
        ("https://[::1]:8443/hook", "::1 is loopback"),
        ("https://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe is cloud metadata"),
        ("https://hooks.example.com/x?token=1", None),  # a name: the resolver decides
        ("https://8.8.8.8/", None),
    ],
)
def test_a_literal_ip_in_the_url_is_checked(url: str, refusal: str | None) -> None:
    assert literal_refusal(URL(url), AddressGuard()) == refusal


def test_the_socket_factory_refuses_before_creating_a_socket() -> None:
    factory = guarded_socket_factory(AddressGuard())
    with pytest.raises(ForbiddenAddress, match=r"SSRF guard: 10\.0\.0\.7 is private"):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443)))
    with pytest.raises(ForbiddenAddress, match="fe80::1 is link-local"):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1", 443, 0, 2)))


class Dns(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_the_resolver_refuses_a_name_with_any_refused_address() -> None:
    """DNS rebinding: a public and a private answer together must not get through."""
    rebinding = GuardedResolver(AddressGuard(), Dns("93.184.216.34", "192.168.0.10"))
    with pytest.raises(ForbiddenAddress, match=r"192\.168\.0\.10 is private"):
        await rebinding.resolve("hooks.example.com", 443)
    public = GuardedResolver(AddressGuard(), Dns("93.184.216.34"))
    assert [r["host"] for r in await public.resolve("hooks.example.com", 443)] == ["93.184.216.34"]
