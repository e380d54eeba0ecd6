"""Masking credentials out of URLs and text before they reach a log line, a status payload
or an error message. Pure string functions.

Stream URLs carry secrets in two places: the user info (``rtsp://user:pass@cam/...``) and
query parameters of cheap cameras (``/videostream.cgi?user=admin&pwd=1234``). Both are
replaced by ``***``; host, port and path stay, because they are what a technician needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
# query parameters whose value is a secret (compared lower-case)
SECRET_QUERY_KEYS = frozenset({
    "user", "username", "usr", "login", "pass", "passwd", "password", "pwd", "token",
    "access_token", "auth", "authorization", "key", "apikey", "api_key", "secret",
    "signature", "sig", "credential", "credentials",
})
# scheme://userinfo@ anywhere in a text; the user info runs to the last "@" before the path
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<key>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")


def _mask_userinfo(match: re.Match[str]) -> str:
    masked = f"{MASK}:{MASK}" if ":" in match.group("userinfo") else MASK
    return f"{match.group('scheme')}{masked}@"


def _mask_param(match: re.Match[str]) -> str:
    if match.group("key").lower() not in SECRET_QUERY_KEYS:
        return match.group(0)
    return f"{match.group('lead')}{match.group('key')}={MASK}"


def mask_url(url: str) -> str:
    """``url`` with its user info and secret query values replaced by ``***``.

    >>> mask_url("rtsp://admin:hunter2@10.0.0.7:554/live?channel=1&pwd=hunter2")
    'rtsp://***:***@10.0.0.7:554/live?channel=1&pwd=***'
    """
    masked = _USERINFO.sub(_mask_userinfo, url, count=1)
    head, sep, query = masked.partition("?")
    if not sep:
        return masked
    return head + _QUERY_PARAM.sub(_mask_param, sep + query)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Every URL in ``text`` masked like :func:`mask_url`, and every occurrence of the given
    secret strings (raw and percent-encoded) replaced by ``***``. For messages that come from
    elsewhere: FFmpeg's stderr, exceptions, whole log lines."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
        encoded = quote(secret, safe="")
        if encoded != secret:
            text = text.replace(encoded, MASK)
    text = _USERINFO.sub(_mask_userinfo, text)
    return _QUERY_PARAM.sub(_mask_param, text) if "=" in text else text
