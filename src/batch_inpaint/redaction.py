"""Secrets out of what a person or a log reads: a URL's password (in its user part or its query)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``; a URL that does not parse is hidden whole."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{HIDDEN}@{host}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k.lower() == "password" for k, _ in pairs):
        query = urlencode([(k, HIDDEN if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def passwords(url: str) -> list[str]:
    """Every spelling of the URL's passwords that could turn up in a message."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    except ValueError:
        pass
    return [p for p in found if p]


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, say) with ``url`` and its passwords made safe to show."""
    text = text.replace(url, redact_url(url))
    for secret in sorted(set(passwords(url)), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def origin(url: str) -> str:
    """Only where ``url`` goes (scheme, host, port): a webhook's path or query is its secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return HIDDEN
    return f"{parts.scheme}://{host}{port}/{HIDDEN}" if parts.path.strip("/") or parts.query else \
        f"{parts.scheme}://{host}{port}"
