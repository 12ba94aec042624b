"""`appliance backup DIR`: a consistent copy of the home (store, models, keys, settings).

With no daemon running the command copies the store itself. While a daemon owns the store it
asks the daemon (POST /backups, an admin key as for `appliance keys`) to take the backup into
<home>/backups/<name>/, then moves that folder to DIR: the command runs on the daemon's box.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands._common import add_home, add_json, cli_actor, print_json
from appliance.commands._daemon import add_daemon_options, via_daemon
from appliance.errors import NotFoundError, StoreLockedError

if TYPE_CHECKING:
    from appliance.services.backup import BackupManifest

# a backup of a large store can take minutes; the daemon answers only once it is complete
BACKUP_TIMEOUT_S = 3600.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "backup", help="copy the home (store, model versions, keys, settings) into DIR; "
                       "consistent also while the daemon runs")
    p.add_argument("dir", help="a new or empty folder for the backup")
    add_home(p)
    add_json(p)
    add_daemon_options(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from appliance.home import resolve_home
    from appliance.services.backup import check_destination, take_backup
    from appliance.store import Store, db_path

    home = resolve_home(args.home)
    dest = Path(args.dir).expanduser().resolve()
    check_destination(dest)
    if not db_path(home).is_file():
        raise NotFoundError(f"no appliance store in {home}: nothing to back up")
    try:
        store = Store.open(home)
    except StoreLockedError:
        manifest = _by_daemon(args, home, dest)
        by = "the running daemon"
    else:
        with store:
            manifest = take_backup(store, home, dest, cli_actor())
        by = "this command (no daemon running)"
    if args.json:
        print_json({"dir": str(dest), **manifest.as_dict()})
        return 0
    c = manifest.counts
    print(f"backup of {home} in {dest}, taken by {by}: {c.get('holes', 0)} holes, "
          f"{c.get('labels', 0)} labels, {len(manifest.models)} model version(s) (active "
          f"{manifest.active_model or 'none'}), {c.get('api_keys', 0)} key(s); "
          f"{len(manifest.files)} files, {manifest.total_bytes / 1e6:.1f} MB")
    return 0


def _by_daemon(args: argparse.Namespace, home: Path, dest: Path) -> BackupManifest:
    """The daemon takes the backup into <home>/backups/<name>/; it is moved to dest."""
    from appliance.home import BACKUPS_DIR
    from appliance.services.backup import move_backup

    made = via_daemon(args, "POST", "/backups", None, purpose="take the backup",
                      timeout=BACKUP_TIMEOUT_S)
    taken = home / BACKUPS_DIR / str(made["name"])
    if not taken.is_dir():
        raise NotFoundError(f"the daemon took backup {made['name']} but {taken} is not there: "
                            "is --home the running daemon's home?")
    return move_backup(taken, dest)
