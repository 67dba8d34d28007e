"""Secrets out of everything ParkPulse prints or logs.

One rule for every URL, DSN and message that may quote one:
- userinfo: `user:password@host` becomes `user:***@host` (the account name stays, it tells an
  operator which login was used); a lone `token@host` becomes `***@host`, since a user-name-only
  userinfo is how many services carry an access token;
- query (and fragment) parameters whose name contains token, key, secret, sign, password, passwd,
  pwd, auth or credential (case-insensitive), or is exactly `sig` or `pass`, keep their name and
  lose their value: `?access_token=***&sign=***`;
- libpq key=value DSNs (`host=db password=…`) and `name=value` pairs in free text follow the same
  names rule.

A secret carried in the path of a URL (`…/hook/<token>`) is not recognised. The helpers never
raise: a value they cannot take apart is shown masked as a whole rather than in clear.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

__all__ = ["MASK", "is_secret_name", "redact_text", "redact_url", "redact_value"]

MASK = "***"
_SECRET_PARTS = ("token", "key", "secret", "sign", "password", "passwd", "pwd", "auth", "credential")
_SECRET_NAMES = frozenset({"sig", "pass", "pw"})
_UNPARSEABLE = "<a URL that could not be parsed, not shown>"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
# a URL inside a message, up to a blank, a quote or an angle bracket
# (each starts only where a word starts, so a long run of letters costs linear time, not quadratic)
_URL_IN_TEXT = r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+"
# name=value: a libpq DSN item, a query parameter quoted in a message; a quoted libpq value may hold blanks
_PAIR = r"(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|[^\s&;,'\"]+)"
_TEXT = re.compile(f"(?P<url>{_URL_IN_TEXT})|{_PAIR}")


def is_secret_name(name: str) -> bool:
    """Whether a parameter, DSN key or settings field of this name holds a secret."""
    n = name.strip().lower()
    return n in _SECRET_NAMES or any(part in n for part in _SECRET_PARTS)


def redact_url(url: object) -> str:
    """A URL (any scheme) or a libpq key=value DSN, fit to print: see the module's rule."""
    try:
        text = url if isinstance(url, str) else str(url)
        scheme, sep, _ = text.partition("://")
        return _url(text) if sep and _SCHEME.match(scheme) else _text(text)
    except Exception:  # never let the redaction itself be the error
        return _UNPARSEABLE


def redact_text(text: object) -> str:
    """A message (an exception text, a validation reason) with every URL and secret pair in it redacted."""
    try:
        return _text(text if isinstance(text, str) else str(text))
    except Exception:
        return _UNPARSEABLE


def redact_value(name: str, value: object) -> str:
    """repr() of a value found in the field `name` (a dotted path is fine), fit for an error message:
    masked whole when the field's name says secret, its URLs redacted otherwise."""
    try:
        last = re.split(r"[.\[\]]", name.strip("]"))[-1] if name else ""
        return redact_text(repr(_scrub(last, value, 0)))
    except Exception:  # a value whose repr() fails (deep nesting, a broken __repr__)
        return f"<{type(value).__name__}>"


def _scrub(name: str, value: object, depth: int) -> object:
    """A copy of `value` with secret-named entries masked, into mappings and lists (a whole
    section quoted by an error, e.g. `uplink: {username, password}` missing its url)."""
    if value is not None and value != "" and is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if depth < 20 and isinstance(value, dict):
        return {k: _scrub(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 20 and isinstance(value, list | tuple):
        return type(value)(_scrub("", v, depth + 1) for v in value)
    return value


def _text(text: str) -> str:
    return _TEXT.sub(lambda m: _url(m["url"]) if m["url"] else _pair(m), text)


def _url(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if (
        "@" not in authority
        and "@" in tail
        and ":" in authority
        and not authority.rpartition(":")[2].isdigit()
    ):
        # `user:pa/ss@host`: a password with an unencoded / ? or # — userinfo runs to the last @
        at = tail.rfind("@")
        more = min((i for i in (tail.find(c, at) for c in "/?#") if i >= 0), default=len(tail))
        authority, tail = authority + tail[:more], tail[more:]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    path, qmark, query = tail.partition("?")
    if not qmark:
        path, hashmark, fragment = tail.partition("#")
        return f"{scheme}{sep}{authority}{path}{hashmark}{_params(fragment)}"
    query, hashmark, fragment = query.partition("#")
    return f"{scheme}{sep}{authority}{path}?{_params(query)}{hashmark}{_params(fragment)}"


def _params(query: str) -> str:
    """`a=1&access_token=x;sig=y` → `a=1&access_token=***;sig=***` (separators and encoding kept)."""
    out = []
    for item in re.split(r"([&;])", query):
        name, eq, value = item.partition("=")
        out.append(f"{name}={MASK}" if eq and value and is_secret_name(unquote_plus(name)) else item)
    return "".join(out)


def _pair(m: re.Match[str]) -> str:
    if is_secret_name(m["name"]) and m["value"] not in ("", "''"):
        return f"{m['name']}{m['eq']}{MASK}"
    return m[0]
