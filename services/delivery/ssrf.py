"""Which addresses a delivery may connect to (pure): the SSRF guard's decisions.

A destination URL or SMTP host comes from a customer's sites file, so it may
point anywhere, including at this machine, the cluster's private network or a
cloud provider's metadata service. Every address a sender is about to connect
to is classified here; the adapters (:mod:`services.delivery.guarded_http`,
:mod:`services.delivery.email`) check the *resolved* addresses, at connect
time, so a name that resolves (or rebinds) to a private address is refused.

Refused: loopback, private (RFC 1918, unique-local ``fc00::/7``), link-local,
multicast, reserved, unspecified, shared address space (CGNAT
``100.64.0.0/10``), every other address that is not globally routable
(documentation, benchmarking, ...), and IPv6 addresses that embed an IPv4
address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4, Teredo)
which are judged by the IPv4 address inside. An allowlist of networks
(:data:`ALLOW_ENV`, e.g. ``127.0.0.0/8`` for a local receiver in tests)
permits otherwise refused addresses, except the cloud metadata endpoints,
which are never permitted: no test and no customer needs them, and they hold
the host's credentials.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_ENV = "LEADFLOW_DELIVERY_ALLOW_NETWORKS"
"""The allowlist setting: networks separated by commas or spaces (``127.0.0.0/8, ::1``)."""

METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address; the server's is public
    return None


def is_metadata(address: IPAddress) -> bool:
    """A cloud metadata endpoint, also when carried inside an IPv6 address."""
    inner = embedded_ipv4(address)
    return address in METADATA or (inner is not None and inner in METADATA)


def classify(address: IPAddress) -> str | None:
    """Why ``address`` must not be connected to, or None if it is globally routable."""
    if is_metadata(address):
        return "cloud metadata"
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = classify(inner)
        return f"IPv4 {reason} inside IPv6" if reason else None
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "shared address space (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


def parse_networks(text: str) -> tuple[Network, ...]:
    """Networks (or single addresses) separated by commas or whitespace.

    Raises ValueError naming the first entry that is not one."""
    out: list[Network] = []
    for item in text.replace(",", " ").split():
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network (like 127.0.0.0/8)") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class AddressGuard:
    """The SSRF policy one worker applies: refused classes, minus the allowlist."""

    allow: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AddressGuard:
        """From :data:`ALLOW_ENV`; a bad entry raises ValueError naming the setting."""
        try:
            return cls(parse_networks(env.get(ALLOW_ENV, "")))
        except ValueError as exc:
            raise ValueError(f"{ALLOW_ENV}: {exc}") from None

    def allowed(self, address: IPAddress) -> bool:
        if any(address.version == n.version and address in n for n in self.allow):
            return True
        inner = embedded_ipv4(address)
        return inner is not None and self.allowed(inner)

    def refusal(self, address: IPAddress | str) -> str | None:
        """None if a sender may connect to ``address``; else why not (short, for logs)."""
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return f"{address!r} is not an IP address"
        reason = classify(address)
        if reason is None:
            return None
        if not is_metadata(address) and self.allowed(address):
            return None
        return f"{address} is {reason}"

    def first_refusal(self, addresses: Iterable[IPAddress | str]) -> str | None:
        """The refusal of the first forbidden address: one is enough to refuse a name."""
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                return reason
        return None
