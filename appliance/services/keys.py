"""API keys: random tokens shown once, kept only as a keyed hash.

The hash is HMAC-SHA256 of the key under a fixed, public label: a stolen database gives no key
back. Keys carry 256 random bits, so a plain hash (looked up by value) is enough; no salt or
slow hash is needed as it would be for passwords people choose.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "apk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hmac.new(b"drill-appliance api key v1", key.encode("utf-8"), hashlib.sha256).hexdigest()


def name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return (f"key name {name!r} must be 1-64 characters of letters, digits, '.', '_', '@' "
                "or '-', starting with a letter or digit")
    return None
