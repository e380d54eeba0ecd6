"""A network camera's URL and its credentials, checked once (pure; no I/O).

Credentials come either inside the URL (``rtsp://user:pass@host/path``, percent-encoded) or
from the config's ``username``/``password`` fields (usually ``${ENV}``), never both. The
full URL is only ever handed to the connection; everything a person sees uses
:attr:`StreamUrl.masked`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from edge_runtime.redact import mask_url

DEFAULT_PORTS = {"rtsp": 554, "http": 80}


@dataclass(frozen=True)
class StreamUrl:
    """A validated stream URL. ``repr`` never shows the URL or the credentials."""

    url: str = field(repr=False)  # as configured, without the credentials of the fields
    scheme: str
    host: str
    port: int
    target: str  # path and query, what an HTTP request asks for
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, schemes: tuple[str, ...], *, username: str | None = None,
              password: str | None = None) -> StreamUrl:
        """Check ``url`` and the credential fields; ValueError (with a masked URL) if wrong."""
        shown = mask_url(url)
        if any(c.isspace() for c in url):
            raise ValueError(f"url {shown} contains white space (percent-encode it as %20)")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            raise ValueError(f"url {shown} is not a valid URL ({err}); percent-encode special "
                             "characters of the password, or use the password field") from None
        if parts.scheme not in schemes:
            raise ValueError(f"url {shown} must start with "
                             f"{' or '.join(s + '://' for s in schemes)}")
        if not parts.hostname:
            raise ValueError(f"url {shown} has no host")
        if "@" in parts.path or "@" in parts.query:
            raise ValueError(f"url {shown}: an '@' after the host; percent-encode '/', '?', '#' "
                             "and '@' in the password (%2F %3F %23 %40), or use the password "
                             "field")
        in_url = parts.username is not None
        if in_url and (username is not None or password is not None):
            raise ValueError(f"url {shown} has credentials and username/password are set too; "
                             "give them one way")
        if in_url:
            username = unquote(parts.username or "")
            password = None if parts.password is None else unquote(parts.password)
        if password is not None and not username:
            raise ValueError("a password needs a username")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return cls(url=url, scheme=parts.scheme, host=parts.hostname,
                   port=port or DEFAULT_PORTS.get(parts.scheme, 0), target=target,
                   username=username or None, password=password)

    @property
    def masked(self) -> str:
        """The URL for people: no credentials (see :func:`edge_runtime.redact.mask_url`)."""
        return mask_url(self.url)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings to mask in free text (the password) when they come back in a message."""
        return (self.password,) if self.password else ()

    def with_credentials(self) -> str:
        """The URL with the credentials inside it, as FFmpeg takes them. Never log it."""
        if self.username is None:
            return self.url
        parts = urlsplit(self.url)
        userinfo = quote(self.username, safe="")
        if self.password is not None:
            userinfo += ":" + quote(self.password, safe="")
        netloc = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{userinfo}@{netloc}").geturl()

    def basic_authorization(self) -> str | None:
        """The HTTP ``Authorization`` header value for Basic authentication, if any."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
