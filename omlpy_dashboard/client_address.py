"""The address of the client behind the request, believing forwarded headers only from TRUSTED_PROXIES.

Behind a reverse proxy every request comes from the proxy's address, so the login throttle and the audit
trail need the address the proxy saw instead. A client can send any X-Forwarded-For it likes, though: each
proxy appends the address of the peer it talked to, so only the entries a trusted proxy appended can be
believed. `client_address` therefore walks the header from the right, past trusted proxies, and stops at
the first address that is not one of them.

`ForwardedHeadersMiddleware` removes the forwarded headers of any request whose peer is not a trusted
proxy, so that Django (SECURE_PROXY_SSL_HEADER, the host) and the code after it only see headers a proxy set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# request.META keys of the headers a proxy sets about the client and the original request.
FORWARDED_HEADERS = (
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


def parse_networks(entries: Iterable[str]) -> list[IPNetwork]:
    """TRUSTED_PROXIES as networks (a single address is a /32 or /128); a bad entry is named in the error."""
    networks = []
    for entry in entries:
        text = str(entry).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {text!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)."
            ) from None
    return networks


def parse_address(text: str | None) -> IPAddress | None:
    """One address as proxies write it (`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`), or None.

    IPv4-mapped IPv6 addresses (a dual-stack socket's view of an IPv4 client) become IPv4, and an IPv6 zone
    is dropped, so that one client always has one spelling.
    """
    text = (text or "").strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(parse_networks(entries))


def trusted_networks() -> tuple[IPNetwork, ...]:
    # Read on every call (and cached per value), so that a changed setting takes effect at once.
    return _networks(tuple(str(entry) for entry in getattr(settings, "TRUSTED_PROXIES", ())))


def _is_trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def peer_is_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the request's peer (REMOTE_ADDR) is one of TRUSTED_PROXIES."""
    networks = trusted_networks()
    peer = parse_address(request.META.get("REMOTE_ADDR"))
    return bool(networks) and peer is not None and _is_trusted(peer, networks)


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address: REMOTE_ADDR, or behind a trusted proxy the address that proxy saw.

    Behind a trusted proxy, X-Forwarded-For is read from the right: each entry was appended by the hop to
    its right, so the first entry that is not itself a trusted proxy is the client, and anything to its left
    is whatever the client chose to send. Entries that are not addresses are passed over. When every entry
    is a trusted proxy (a request from inside), the left-most of them is the client.
    """
    if request is None:
        return None
    peer = parse_address(request.META.get("REMOTE_ADDR"))
    if peer is None:
        return None
    networks = trusted_networks()
    if not networks or not _is_trusted(peer, networks):
        return str(peer)
    left_most: IPAddress | None = None
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = parse_address(entry)
        if address is None:
            continue
        if not _is_trusted(address, networks):
            return str(address)
        left_most = address
    return str(left_most or peer)


class ForwardedHeadersMiddleware:
    """Removes the forwarded headers of requests that did not come through a trusted proxy.

    It runs before SecurityMiddleware: SECURE_PROXY_SSL_HEADER, the https redirect and everything after
    would otherwise believe an X-Forwarded-Proto sent by anyone who can reach the server directly.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not peer_is_trusted_proxy(request):
            for key in FORWARDED_HEADERS:
                request.META.pop(key, None)
            # request.headers is built from META once; a middleware before this one may have built it.
            request.__dict__.pop("headers", None)
        return self.get_response(request)
