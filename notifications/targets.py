"""Where a notification may go: the shape of each channel's target, and the refusal of targets that resolve to
addresses inside the network (loopback, private, link-local, IPv4-mapped IPv6 and the like), checked at save
and again at delivery. A webhook then connects to the very address that was checked (PinnedSession), with the
host name kept for the Host header and TLS, and follows no redirect."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

# What the API document publishes for each channel's target, and what is accepted (ECMA-262 and Python read these
# alike). An email target is one address, no display name; a webhook's host is a name or an IPv4 address.
EMAIL_PATTERN = (
    r"^[^@ \t\n\r\f\v\x00<>,;\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
PORT_PATTERN = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL_PATTERN = r"^https?://[^ \t\n\r\f\v\x00/?#@:\[\]\\]+(?::" + PORT_PATTERN + r")?(?:[/?#][^ \t\n\r\f\v\x00]*)?$"


def apprise_pattern() -> str:
    """An Apprise URL of one of the allowed schemes (NOTIFY_APPRISE_SCHEMES)."""
    schemes = "|".join(re.escape(scheme) for scheme in settings.NOTIFY_APPRISE_SCHEMES)
    return r"^(?:" + schemes + r")://[^ \t\n\r\f\v\x00]+$"


# Apprise services that connect to a host named in the URL (self-hosted ones): that host is checked like a
# webhook's. The others reach their vendor's fixed public API, and their URL's "host" is a token.
APPRISE_HOSTED_SCHEMES = frozenset({"mattermost", "mmost", "matrix", "ntfy", "ntfys", "gotify", "gotifys"})
TARGET_MAX = 2000


class TargetRefused(ValueError):
    """The target may not be used; the message says why, in words for the rule's owner."""


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped or address.sixtofour or address.teredo):
        return True
    return not address.is_global or address.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, each checked: TargetRefused when one is not public (unless
    NOTIFY_ALLOW_PRIVATE_TARGETS) or when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise TargetRefused(f"The host {host!r} cannot be resolved ({exc.__class__.__name__}).") from None
    addresses = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if _refused_address(address) and not settings.NOTIFY_ALLOW_PRIVATE_TARGETS:
            raise TargetRefused(
                f"The host {host!r} resolves to {address}, an address inside the network (loopback, private, "
                "link-local or mapped): refused."
            )
        addresses.append(text)
    if not addresses:
        raise TargetRefused(f"The host {host!r} resolves to no address.")
    return addresses


def _url_host(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise TargetRefused("The URL's port is not a number from 1 to 65535.") from None
    host = parts.hostname or ""
    if not host:
        raise TargetRefused("The URL names no host.")
    return host, port or (443 if parts.scheme in ("https", "ntfys", "gotifys") else 80)


def target_problem(channel: str, target: str) -> str | None:
    """Why `target` is not a valid target of `channel` (its shape and scheme only); None when it is."""
    if channel == "inapp":
        return "An in-app rule has no target." if target else None
    if not target:
        return "A target is required for this channel."
    if len(target) > TARGET_MAX:
        return f"At most {TARGET_MAX} characters."
    if channel == "email":
        return None if re.fullmatch(EMAIL_PATTERN, target) else "Enter one email address, e.g. ops@example.com."
    if channel == "webhook":
        if not re.fullmatch(URL_PATTERN, target):
            return "Enter an http:// or https:// URL with a host, e.g. https://hooks.example.com/omlpy."
        try:
            _url_host(target)
        except TargetRefused as exc:
            return str(exc)
        return None
    if channel == "apprise":
        if not re.fullmatch(apprise_pattern(), target):
            allowed = ", ".join(settings.NOTIFY_APPRISE_SCHEMES)
            return f"Enter an Apprise URL of an allowed service ({allowed}), e.g. msteams://TokenA/TokenB/TokenC/."
        return None
    return "Unknown channel."


def target_check(channel: str, target: str) -> None:
    """Resolve and check the host a webhook or a self-hosted Apprise service would be sent to (at save and at
    delivery); TargetRefused when it may not be. Allowed private targets skip the lookup."""
    if settings.NOTIFY_ALLOW_PRIVATE_TARGETS:
        return
    if channel == "webhook" or (channel == "apprise" and target.split("://", 1)[0] in APPRISE_HOSTED_SCHEMES):
        resolve(*_url_host(target))


class _PinnedAdapter(HTTPAdapter):
    """Connects to the checked address while TLS verifies the certificate for the host name."""

    def __init__(self, hostname: str, **kwargs):
        self._hostname = hostname
        super().__init__(max_retries=0, **kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs["server_hostname"] = self._hostname
        pool_kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def pinned_post(url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> requests.Response:
    """POST `data` to `url` at the address its host was checked to resolve to; no redirects, no proxies from
    the environment (they would connect elsewhere), connect and read timeouts."""
    host, port = _url_host(url)
    address = resolve(host, port)[0]
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    session = requests.Session()
    session.trust_env = False
    session.mount(f"{parts.scheme}://", _PinnedAdapter(host))
    default_port = 443 if parts.scheme == "https" else 80
    with session:
        return session.post(
            pinned,
            data=data,
            headers={**headers, "Host": host if port == default_port else f"{host}:{port}"},
            timeout=(timeout, timeout),
            allow_redirects=False,
        )
