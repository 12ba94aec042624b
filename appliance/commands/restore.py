"""`appliance restore DIR`: a backup made by `appliance backup` becomes the home.

Refused while a daemon owns the home. Every file is checked against the backup's manifest
before anything changes; a home that holds anything is moved aside (--force), never deleted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.commands._common import add_home, add_json, cli_actor, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "restore", help="restore a backup made by `appliance backup` as the home (the daemon "
                        "stopped)")
    p.add_argument("dir", help="the backup folder")
    add_home(p)
    add_json(p)
    p.add_argument("--force", action="store_true",
                   help="restore over a home that holds anything: it is moved aside to "
                        "<home>.before-restore-<time>, not deleted")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from appliance.home import resolve_home
    from appliance.services.backup import restore_backup

    done = restore_backup(Path(args.dir).expanduser().resolve(), resolve_home(args.home),
                          cli_actor(), force=args.force)
    m = done.manifest
    if args.json:
        print_json({"home": str(done.home),
                    "moved_aside": str(done.moved_aside) if done.moved_aside else None,
                    **m.as_dict()})
        return 0
    print(f"restored the backup of {m.created_at} (appliance {m.appliance_version}) into "
          f"{done.home}: {m.counts.get('holes', 0)} holes, {m.counts.get('labels', 0)} labels, "
          f"{len(m.models)} model version(s) (active {m.active_model or 'none'})")
    if done.moved_aside is not None:
        print(f"the home that was there is in {done.moved_aside}")
    return 0
