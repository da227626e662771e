"""Outbound HTTP for webhooks that cannot be aimed at the inside of the network (no SSRF).

The host name is resolved once, every address is checked (loopback, private, link-local,
multicast, reserved and other non-global ranges are refused unless the installation allows them
in ``LOUPE_WEBHOOK_ALLOWED_NETWORKS``), and the connection goes to the checked address itself
(TLS still verifies the certificate against the host name), so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot redirect it. Redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import certifi
import urllib3
from django.conf import settings
from urllib3.util import parse_url

RESPONSE_EXCERPT = 1000


class Refused(Exception):
    """The URL is not allowed (scheme, address); retrying cannot help."""


@dataclass(frozen=True)
class Response:
    status: int
    text: str


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an allowed URL, or ``Refused`` with the reason."""
    try:
        parsed = parse_url(url)
    except ValueError:
        raise Refused("That is not a valid URL.") from None
    allowed_schemes = {"https", "http"} if settings.LOUPE_WEBHOOK_ALLOW_HTTP else {"https"}
    if parsed.scheme not in allowed_schemes:
        raise Refused("Webhook URLs must start with https://.")
    if not parsed.host or parsed.auth:
        raise Refused("The URL needs a host name (and no user:password@).")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.host.strip("[]")
    if _is_ip(host):
        check_address(host)
    return parsed.scheme, host, port, parsed.request_uri


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_address(address: str) -> None:
    """Refuse an address outside the public internet unless the installation allows it."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(net, strict=False) for net in settings.LOUPE_WEBHOOK_ALLOWED_NETWORKS):
        return
    if not ip.is_global or ip.is_multicast:
        raise Refused(f"{ip} is a private, loopback, link-local or reserved address; webhooks go to the public internet.")


def resolve(host: str, port: int) -> str:
    """The first address of ``host``, after checking every one it resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        check_address(address)
    return addresses[0]


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Response:
    """POST ``body`` to ``url`` through a checked address. Network problems raise (retryable)."""
    scheme, host, port, path = check_url(url)
    address = resolve(host, port)
    default_port = 443 if scheme == "https" else 80
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == default_port else f":{port}")
    options = {"timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False, "maxsize": 1}
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=settings.LOUPE_WEBHOOK_CA_BUNDLE
                                           or certifi.where(), **options)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **options)
    with pool:
        response = pool.urlopen("POST", path, body=body, headers={**headers, "Host": host_header},
                                redirect=False, preload_content=False)
        try:
            text = response.read(RESPONSE_EXCERPT, decode_content=True).decode("utf-8", "replace")
        finally:
            response.release_conn()
    return Response(status=response.status, text=text)
