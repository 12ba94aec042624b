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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from appliance.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from appliance.store import Store

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


Role = Literal["integration", "operator", "admin"]
# Each role may do what the ones before it may (architecture.md, "Who may do what"):
# integration reads, sends holes and asks for estimates; operator also confirms labels,
# fine-tunes, activates a candidate that passed every gate and rolls back; admin also forces
# past a gate, sets a shadow model, manages keys and takes backups.
ROLES: tuple[Role, ...] = ("integration", "operator", "admin")


@dataclass(frozen=True)
class KeyIdentity:
    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)


def role_problem(role: str) -> str | None:
    if role not in ROLES:
        return f"role {role!r} is not one of {', '.join(ROLES)}"
    return None


def as_role(role: str) -> Role:
    problem = role_problem(role)
    if problem:
        raise ValueError(problem)
    return cast(Role, role)


def create_key(store: Store, name: str, role: str, actor: str) -> str:
    """A new key with a role, stored hashed and audited; returned once. What `POST /keys` and
    `appliance keys create` (no daemon running) both do."""
    import duckdb  # only writers of keys need it

    problem = name_problem(name) or role_problem(role)
    if problem:
        raise ValidationError(problem)
    taken = ConflictError(f"a key named {name!r} exists already; revoke it first or choose "
                          "another name")
    if any(k["name"] == name for k in store.api_keys()):
        raise taken
    key = new_key()
    try:
        store.add_api_key(name, hash_key(key), role=role)
    except duckdb.ConstraintException:  # made meanwhile by another thread
        raise taken from None
    store.audit(actor, "key-create", name, {"role": role})
    return key


def revoke_key(store: Store, name: str, actor: str) -> None:
    """Delete a key and audit it (a daemon also forgets it in memory: see Daemon.revoke_key)."""
    if not store.delete_api_key(name):
        raise NotFoundError(f"no key named {name!r}")
    store.audit(actor, "key-revoke", name, None)
