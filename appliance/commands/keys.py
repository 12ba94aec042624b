"""`appliance keys create|list|delete`: API keys with roles (shown once, stored hashed).

With no daemon running the verbs open the store; when a daemon holds it they go through its
API (POST/GET/DELETE /keys), with an admin key from --key, $APPLIANCE_KEY or the daemon's
first key in <home>/admin.key, so a revoked key stops working at once. Either way the same
service functions make, audit and revoke a key (appliance.services.keys).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.commands._common import (
    add_home,
    add_json,
    cli_actor,
    print_json,
    print_table,
)
from appliance.commands._daemon import add_daemon_options, via_daemon
from appliance.errors import StoreLockedError, ValidationError

if TYPE_CHECKING:
    # for the annotation only: importing the store at run time would load duckdb eagerly
    from appliance.store import Store

DEFAULT_ROLE = "operator"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("keys", help="API keys (with roles) for the daemon's REST API")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a key and print it (once)")
    c.add_argument("name", help="who or what uses the key (e.g. tui-rig3, scada)")
    c.add_argument("--role", default=DEFAULT_ROLE, choices=("integration", "operator", "admin"),
                   help="integration: read, send holes, ask for estimates; operator: also "
                        "confirm labels, fine-tune, activate a candidate that passed its gates, "
                        "roll back; admin: also force past a gate, shadow, keys, backups "
                        f"(default {DEFAULT_ROLE})")
    c.set_defaults(func=create)
    ls = sub.add_parser("list", help="key names, roles and creation times (never the keys)")
    ls.set_defaults(func=list_keys)
    d = sub.add_parser("delete", help="revoke a key (at once, also while the daemon runs)")
    d.add_argument("name")
    d.set_defaults(func=delete)
    for parser in (c, ls, d):
        add_home(parser)
        add_json(parser)
        add_daemon_options(parser)


def _store(home: str | None) -> Store:
    from appliance.home import resolve_home
    from appliance.store import Store

    return Store.open(resolve_home(home))


def _local_or_daemon(args: argparse.Namespace, local: Callable[[], Any],
                     method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """`local()` on the store; through the daemon's API when a daemon holds the store."""
    try:
        return local()
    except StoreLockedError:
        return via_daemon(args, method, path, body, purpose="manage keys")


def create(args: argparse.Namespace) -> int:
    from appliance.services.keys import create_key, name_problem

    problem = name_problem(args.name)
    if problem:  # before asking a daemon for anything
        raise ValidationError(problem)

    def local() -> dict[str, Any]:
        with _store(args.home) as store:
            key = create_key(store, args.name, args.role, cli_actor())
        return {"name": args.name, "role": args.role, "key": key}

    made = _local_or_daemon(args, local, "POST", "/keys",
                            {"name": args.name, "role": args.role})
    if args.json:
        print_json(made)
    else:
        print(made["key"])
        print(f"(key {args.name!r} with role {made['role']!r} created; it is shown only this "
              "once)", flush=True)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    def local() -> list[dict[str, Any]]:
        with _store(args.home) as store:
            return store.api_keys()

    rows = _local_or_daemon(args, local, "GET", "/keys")
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "role", "created_at"])
    return 0


def delete(args: argparse.Namespace) -> int:
    from appliance.services.keys import revoke_key

    def local() -> None:
        with _store(args.home) as store:
            revoke_key(store, args.name, cli_actor())

    _local_or_daemon(args, local, "DELETE", f"/keys/{args.name}")
    if not args.json:
        print(f"key {args.name!r} revoked")
    return 0
