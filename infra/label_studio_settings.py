"""Label Studio's hardening settings: the one source for the Helm values and the local stack.

The cluster (``helm/label-studio`` values built by the Kubernetes layer), the local stack
(``labelstack local up``) and the end-to-end tests all start Label Studio with
:func:`hardened_env`; only where it runs (URL, database, S3 endpoint, which address range the
ML backend lives in) differs, and those are its arguments.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

#: Label Studio 1.23's default SSRF block list (``USE_DEFAULT_BANNED_SUBNETS``).
DEFAULT_BANNED_SUBNETS: tuple[str, ...] = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "233.252.0.0/24",
    "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "fc00::/7", "fe80::/10",
    "ff00::/8",
)


def banned_subnets_except(allowed: Sequence[str]) -> list[str]:
    """The default block list with the ranges in ``allowed`` carved out (and nothing else).

    A default range that contains an allowed range is split around it, so only the allowed
    range becomes reachable (e.g. the cluster's service CIDR inside 10.0.0.0/8)."""
    allowed_nets = [ipaddress.ip_network(a, strict=False) for a in allowed]
    out: list[str] = []
    for entry in DEFAULT_BANNED_SUBNETS:
        pieces = [ipaddress.ip_network(entry)]
        for hole in allowed_nets:
            next_pieces = []
            for piece in pieces:
                if piece.version != hole.version or not hole.overlaps(piece):
                    next_pieces.append(piece)
                elif hole.supernet_of(piece):
                    continue  # the whole piece is allowed
                else:
                    next_pieces.extend(piece.address_exclude(hole))
            pieces = next_pieces
        out.extend(str(p) for p in sorted(pieces, key=lambda n: (n.version, n)))
    return out


def hardened_env(*, host_url: str, secure_cookies: bool,
                 ml_backend_cidrs: Sequence[str],
                 allowed_hosts: Sequence[str] | None = None) -> dict[str, str]:
    """Settings every Label Studio of this product runs with, wherever it runs.

    ``host_url``: the URL users open (exact origin, no trailing slash); ``secure_cookies``:
    true behind HTTPS; ``ml_backend_cidrs``: the only ranges taken off the SSRF block list
    (the cluster's service CIDR, or loopback for the local stack); ``allowed_hosts``: the
    Host headers Django accepts (``ALLOWED_HOSTS``), the URL's host first; ``None`` leaves
    Label Studio's default."""
    host_url = host_url.rstrip("/")
    hosts = {} if allowed_hosts is None else {"ALLOWED_HOSTS": ",".join(allowed_hosts)}
    return {
        **hosts,
        # no self-signup: users join with an invite link
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # never serve files from the pod's or the machine's disk
        "LOCAL_FILES_SERVING_ENABLED": "false",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "false",
        # no phone-home: vendor Sentry DSNs, analytics and the version check are off
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        # origin and cookies
        "LABEL_STUDIO_HOST": host_url,
        "CSRF_TRUSTED_ORIGINS": host_url,
        "SESSION_COOKIE_SECURE": "1" if secure_cookies else "0",
        "CSRF_COOKIE_SECURE": "1" if secure_cookies else "0",
        # SSRF protection on; only the ML backend's range is reachable
        "SSRF_PROTECTION_ENABLED": "true",
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "USER_ADDITIONAL_BANNED_SUBNETS": ",".join(banned_subnets_except(ml_backend_cidrs)),
        "ML_BLOCK_LOCAL_IP": "false",
    }
