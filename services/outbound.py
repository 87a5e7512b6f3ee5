"""The address a request of the product may go to, resolved and checked now
(`shared.destinations` holds the rules). Used by the API when a webhook URL is saved and by
the sender before every webhook request; the sender then connects to the address this
returns, so the name is resolved once per request and what was checked is what is reached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from shared.destinations import (
    Allowance,
    address_refusal,
    host_and_port,
    literal_address,
    url_refusal,
)

RESOLVE_SECONDS = 3.0

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""A host name and port to the addresses they resolve to now."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver, off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class ForbiddenDestination(Exception):
    """The URL, or an address its host resolves to, is one the product may not reach."""


async def vetted_address(
    url: str, allowance: Allowance, resolve: Resolver = system_resolver
) -> str | None:
    """The address to connect to for `url`, every address its host resolves to having
    passed the rules; None when the operator allows the host by name (connect by name).
    Raises ForbiddenDestination, or OSError/TimeoutError when the name does not resolve."""
    if refusal := url_refusal(url, allowance):
        raise ForbiddenDestination(refusal)
    host, port = host_and_port(url)
    if allowance.allows_host(host):
        return None
    literal = literal_address(host)
    if literal is not None:
        return str(literal)
    async with asyncio.timeout(RESOLVE_SECONDS):
        resolved = await resolve(host, port)
    addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolved]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        if refusal := address_refusal(address, allowance):
            raise ForbiddenDestination(f"{host} resolves to {refusal}")
    return str(addresses[0])


async def save_time_refusal(
    url: str, allowance: Allowance, resolve: Resolver = system_resolver
) -> str | None:
    """Why a URL may not be saved, or None. A name that does not resolve now is accepted:
    the sender checks it again when it connects."""
    try:
        await vetted_address(url, allowance, resolve)
    except ForbiddenDestination as exc:
        return str(exc)
    except (OSError, TimeoutError, UnicodeError):
        return None
    return None
