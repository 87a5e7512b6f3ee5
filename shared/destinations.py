"""Where the product may send a request (docs/reliability.md, "Security"): a workspace's
webhook, or any URL the product posts to or fetches. Never the machine it runs on, a
private network, link-local addresses (cloud metadata lives there), multicast, unspecified
or reserved addresses, nor a URL carrying credentials, unless the operator allows the host
or range in `NURTURE_WEBHOOK_ALLOW` (the dev stack and the tests receive webhooks on
loopback).

The rules are checked twice: when the URL is saved (its literal address, and what its name
resolves to then) and when the sender connects (every address the name resolves to at that
moment; the request then goes to the address that was checked, so a name that changes its
answer between the check and the connection, DNS rebinding, cannot slip through). Pure:
resolving names is the caller's part.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORBIDDEN = "webhook_url_forbidden"
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Allowance:
    """Hosts and ranges the operator allows although the rules forbid them."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Allowance:
        """`NURTURE_WEBHOOK_ALLOW`: comma-separated host names, addresses and CIDR ranges,
        e.g. `127.0.0.1,::1,localhost,10.20.0.0/16`. Raises ValueError on a bad range."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                if "/" in item:
                    raise ValueError(f"{item!r} is not an address range") from None
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


def literal_address(host: str) -> Address | None:
    """The address a host written as a number means: `127.0.0.1`, `[::1]`, and the forms
    the system's resolver also reads as IPv4 (`2130706433`, `0x7f.1`, `017700000001`,
    `127.1`). None for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if bare and all(c in "0123456789abcdefxABCDEFX." for c in bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def address_refusal(address: Address, allowance: Allowance) -> str | None:
    """Why the product may not connect to `address`, or None when it may."""
    if allowance.allows_address(address):
        return None
    inner: Address = address
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            inner = address.ipv4_mapped
        elif address in NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not address and allowance.allows_address(inner):
            return None
    if inner.is_multicast:
        return f"{address} is a multicast address"
    if inner.is_loopback or inner.is_unspecified:
        return f"{address} is this machine"
    if inner.is_link_local:
        return f"{address} is link-local (where cloud metadata services answer)"
    if not inner.is_global:
        return f"{address} is a private or reserved address"
    return None


def url_refusal(url: str, allowance: Allowance) -> str | None:
    """Why the product may not post to `url` as written (its scheme, credentials, host and
    any address written into it), or None. A name's addresses are checked once resolved."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL cannot be read"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are allowed"
    if parts.username is not None or parts.password is not None:
        return "the URL carries credentials: put them in the signing secret, not in the URL"
    host = parts.hostname
    if not host:
        return "the URL names no host"
    if port == 0:
        return "port 0 is not a port"
    if allowance.allows_host(host):
        return None
    address = literal_address(host)
    if address is not None:
        return address_refusal(address, allowance)
    name = host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is this machine"
    return None


def shown(url: str) -> str:
    """The URL as the API shows it: credentials (refused since, maybe stored before) cut."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host).geturl()


def host_and_port(url: str) -> tuple[str, int]:
    """The host to resolve and the port to connect to."""
    parts: SplitResult = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port
