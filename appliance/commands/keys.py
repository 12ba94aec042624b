"""`appliance keys create|list|delete`: API keys for the daemon (shown once, stored hashed)."""

from __future__ import annotations

import argparse

import duckdb

from appliance.commands._common import add_home, add_json, print_json, print_table
from appliance.errors import NotFoundError, ValidationError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="API keys for the daemon's REST API")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a key and print it (once)")
    c.add_argument("name", help="who or what uses the key (e.g. tui-rig3, scada)")
    add_home(c)
    add_json(c)
    c.set_defaults(func=create)
    ls = sub.add_parser("list", help="key names and creation times (never the keys)")
    add_home(ls)
    add_json(ls)
    ls.set_defaults(func=list_keys)
    d = sub.add_parser("delete", help="revoke a key (restart a running daemon to apply)")
    d.add_argument("name")
    add_home(d)
    d.set_defaults(func=delete)


def _store(home: str | None):  # noqa: ANN202 - the Store type would import duckdb eagerly
    from appliance.home import resolve_home
    from appliance.store import Store

    return Store.open(resolve_home(home))


def create(args: argparse.Namespace) -> int:
    from appliance.services.keys import hash_key, name_problem, new_key

    problem = name_problem(args.name)
    if problem:
        raise ValidationError(problem)
    key = new_key()
    with _store(args.home) as store:
        try:
            store.add_api_key(args.name, hash_key(key))
        except duckdb.ConstraintException:
            raise ValidationError(f"a key named {args.name!r} exists already; delete it first "
                                  "or choose another name") from None
        store.audit("cli", "key-create", args.name, None)
    if args.json:
        print_json({"name": args.name, "key": key})
    else:
        print(key)
        print(f"(key {args.name!r} created; it is shown only this once)", flush=True)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    with _store(args.home) as store:
        rows = store.api_keys()
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "created_at"])
    return 0


def delete(args: argparse.Namespace) -> int:
    with _store(args.home) as store:
        if not store.delete_api_key(args.name):
            raise NotFoundError(f"no key named {args.name!r}")
        store.audit("cli", "key-delete", args.name, None)
    print(f"key {args.name!r} deleted")
    return 0
