"""Who may use the studio: the Host header, the Origin of changes, and a token.

A studio on loopback answers only to loopback names (a page elsewhere cannot reach it
through DNS rebinding) and needs no token. Opened to the network (`folkrnn serve --host
0.0.0.0`) it answers only to its allowed hosts, and every state-changing request (POST,
PUT, PATCH, DELETE) must carry the token printed at start in the `X-Folkrnn-Token`
header. On both, a state-changing request whose Origin header names another site is
refused: a page elsewhere may not change the studio. Refusals are `{"error": ...}`:
400 for a Host not allowed, 403 for a foreign Origin or a missing or wrong token.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from urllib.parse import urlsplit

from folkrnn.errors import FolkRNNError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_HEADER = "X-Folkrnn-Token"
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,200}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _ip(name: str) -> str | None:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return None


def normalize_host(name: str) -> str:
    """A host name or address as compared: lower case, IPv6 without brackets, IPs in
    their canonical form."""
    n = name.strip().lower()
    if n.startswith("[") and n.endswith("]"):
        n = n[1:-1]
    return _ip(n) or n


def is_loopback(host: str) -> bool:
    """True for an address (or `localhost`) only this machine can reach."""
    n = normalize_host(host)
    if n == "localhost":
        return True
    try:
        return ipaddress.ip_address(n).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """True for an address that listens on every interface (0.0.0.0, ::)."""
    n = normalize_host(host)
    return _ip(n) is not None and ipaddress.ip_address(n).is_unspecified


def check_host_name(name: str) -> str:
    """An allowed-host entry (`--allowed-host`): a host name, an IP address, or
    `*.domain` for a domain's hosts; normalized. No port, no scheme, not `*` alone."""
    n = normalize_host(name)
    if n in ("*", "*."):
        raise FolkRNNError("--allowed-host '*' would let any site's page reach the studio (DNS rebinding); "
                           "name the hosts it is reached by")
    if _ip(n) is not None:
        return n
    if "://" in n or "/" in n:
        raise FolkRNNError(f"--allowed-host {name!r}: give a host name (such as studio.example.org), not a URL")
    if ":" in n:
        raise FolkRNNError(f"--allowed-host {name!r}: give a host name without a port")
    bare = n[2:] if n.startswith("*.") else n
    if not _HOSTNAME.fullmatch(bare):
        raise FolkRNNError(f"--allowed-host {name!r}: not a host name, an IP address or *.domain")
    return n


def check_token(token: str) -> str:
    """A token given with `--token`: it goes into the printed URL and a header."""
    if not _TOKEN.fullmatch(token):
        raise FolkRNNError("--token must be 8 to 200 characters, each one of A-Z a-z 0-9 . _ ~ - "
                           f"(it goes into a URL); got {len(token)} characters")
    return token


def new_token() -> str:
    return secrets.token_urlsafe(24)


def default_allowed_hosts(bind: str, hostname: str | None = None) -> list[str]:
    """The hosts a studio listening on `bind` answers to unless told (`--allowed-host`):
    the bound address, the loopback names and this machine's name."""
    if hostname is None:
        hostname = socket.gethostname()
    names = [bind, *LOOPBACK_NAMES]
    if hostname:
        names += [hostname, hostname.split(".")[0]]
    out: list[str] = []
    for n in names:
        try:
            n = check_host_name(n)
        except FolkRNNError:
            continue  # a machine name that is no DNS name: it cannot be in a Host header either
        if n not in out:
            out.append(n)
    return out


def browse_host(bound: str, allowed: list[str]) -> str:
    """The host to print in the studio's address: the bound one, or (bound to every
    interface, or to an address not allowed) this machine's name, else the first
    allowed name."""
    b = normalize_host(bound)
    if not is_wildcard(b) and host_allowed(b, allowed):
        return b
    name = normalize_host(socket.gethostname())
    if name and host_allowed(name, allowed):
        return name
    return next((a for a in allowed if not a.startswith("*.") and not is_wildcard(a)), b)


def access(bind: str, allowed_hosts: list[str] | None = None, token: str | None = None,
           hostname: str | None = None) -> tuple[list[str], str | None]:
    """(allowed hosts, token) for a studio listening on `bind`, from `folkrnn serve`'s
    --allowed-host (None: the default) and --token (None: a new one off loopback, none
    on loopback)."""
    loopback = is_loopback(bind)
    if allowed_hosts:
        hosts = [check_host_name(n) for n in allowed_hosts]
    elif loopback:
        hosts = list(dict.fromkeys(normalize_host(n) for n in (*LOOPBACK_NAMES, bind)))
    else:
        hosts = default_allowed_hosts(bind, hostname)
    if token is not None:
        token = check_token(token)
    elif not loopback:
        token = new_token()
    return hosts, token


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header -> (normalized name, port or None); None when malformed."""
    v = value.strip()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[1:end], v[end + 1:]
        if _ip(name) is None:
            return None
    else:
        name, sep, port = v.partition(":")
        rest = sep + port
    if rest:
        if not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
            return None
        port_n: int | None = int(rest[1:])
        if not 0 < port_n <= 65535:
            return None
    else:
        port_n = None
    if not name:
        return None
    return normalize_host(name), port_n


def host_allowed(name: str, allowed: list[str]) -> bool:
    """`name` (normalized) is one of `allowed`, or under one of its `*.domain` entries."""
    for a in allowed:
        if name == a or (a.startswith("*.") and name.endswith(a[1:])):
            return True
    return False


def same_origin(origin: str, host: tuple[str, int | None]) -> bool:
    """The Origin header names the scheme-less host and port the request was sent to."""
    try:
        o = urlsplit(origin)
        port = o.port
    except ValueError:
        return False
    if o.scheme not in _DEFAULT_PORTS or not o.hostname or o.path or o.query:
        return False
    port = port or _DEFAULT_PORTS[o.scheme]
    name, host_port = host
    # A Host without a port names the scheme's default port (http or https behind a proxy).
    ports_match = port in _DEFAULT_PORTS.values() if host_port is None else port == host_port
    return normalize_host(o.hostname) == name and ports_match


class Guard:
    """ASGI middleware: the Host check (`allowed_hosts`; None: any host), the Origin
    check on state-changing requests, and the token (`token`; None: none needed).
    Runs before the body is read."""

    def __init__(self, app, allowed_hosts: list[str] | None = None, token: str | None = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else [normalize_host(h) for h in allowed_hosts]
        self.token = None if token is None else token.encode()

    async def _refuse(self, scope, receive, send, status: int, message: str) -> None:
        from starlette.responses import JSONResponse

        await JSONResponse({"error": message}, status)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan (the app has no websockets)
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        hosts = [v for k, v in headers if k == b"host"]
        host = split_host(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
        if self.allowed is not None:
            if host is None:
                await self._refuse(scope, receive, send, 400, "the request needs one well-formed Host header")
                return
            if not host_allowed(host[0], self.allowed):
                await self._refuse(scope, receive, send, 400,
                                   f"this studio does not answer to the host {host[0][:100]!r}; to allow it, start "
                                   f"`folkrnn serve` with --allowed-host {host[0][:100]}")
                return
        if scope.get("method") in STATE_CHANGING:
            origins = [v.decode("latin-1") for k, v in headers if k == b"origin"]
            if origins and (len(origins) > 1 or host is None or not same_origin(origins[0], host)):
                await self._refuse(scope, receive, send, 403,
                                   f"the Origin {origins[0][:100]!r} is not this studio's: a page elsewhere may not "
                                   "change the studio")
                return
            if self.token is not None:
                given = [v for k, v in headers if k == TOKEN_HEADER.lower().encode()]
                if not given:
                    await self._refuse(scope, receive, send, 403,
                                       "this studio is open to the network and needs its token to make or change "
                                       "tunes: open the address `folkrnn serve` printed (it ends in ?token=...), "
                                       f"or send the token in the {TOKEN_HEADER} header")
                    return
                if len(given) > 1 or not secrets.compare_digest(given[0], self.token):
                    await self._refuse(scope, receive, send, 403,
                                       f"wrong token in the {TOKEN_HEADER} header: use the one `folkrnn serve` "
                                       "printed at start")
                    return
        await self.app(scope, receive, send)
