"""`appliance serve`: the daemon (REST API, active model, jobs, nightly schedule)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from appliance.commands._common import add_home
from appliance.config import DaemonConfig
from appliance.errors import ValidationError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve", help="run the daemon: REST API, active model, training jobs, nightly schedule",
        description="Run the appliance daemon. It owns the store: other verbs that need the "
                    "database (ingest, label, ...) go through its API while it runs.")
    add_home(p)
    p.add_argument("--config", default=None,
                   help="TOML settings (default: <home>/appliance.toml when present)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8470)")
    p.add_argument("--open-reads", action="store_true", default=None,
                   help="allow read routes without an API key")
    p.add_argument("--mqtt", default=None, metavar="URL",
                   help="the rig's MQTT broker, mqtt://HOST:PORT or mqtts://HOST:PORT "
                        "(default: [mqtt] url of the settings; none: the bus is off)")
    p.add_argument("--watch", action="append", default=None, metavar="DIR",
                   help="ingest new Setitec logs that appear in DIR (repeatable; adds to "
                        "[watch] paths)")
    p.add_argument("--no-schedule", action="store_true",
                   help="do not run the nightly fine-tune schedule in this process")
    p.set_defaults(func=run)


def with_bus_flags(config: DaemonConfig, mqtt: str | None, watch: list[str] | None
                   ) -> DaemonConfig:
    """--mqtt replaces [mqtt] url; --watch adds to [watch] paths."""
    from appliance.config import parse_broker_url

    if mqtt is not None:
        try:
            parse_broker_url(mqtt)
        except ValueError as exc:
            raise ValidationError(f"--mqtt: {exc}") from None
        config = replace(config, mqtt=replace(config.mqtt, url=mqtt))
    if watch:
        paths = config.watch.paths + tuple(str(Path(p).expanduser().resolve()) for p in watch)
        config = replace(config, watch=replace(config.watch, paths=paths))
    return config


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from appliance.config import load_config
    from appliance.services.daemon import Daemon

    config = load_config(args.home, args.config, host=args.host, port=args.port,
                         open_reads=args.open_reads)
    config = with_bus_flags(config, args.mqtt, args.watch)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    if not config.is_loopback:
        print(f"appliance serve: warning: binding {config.host}, not a loopback address: "
              "the API is reachable from the network", file=sys.stderr)
    daemon = Daemon.open(config, schedule=not args.no_schedule)
    app = create_app(daemon, close_on_shutdown=True)
    if daemon.first_key_file is not None:
        print(f"appliance serve: no API key existed; created key 'admin' in "
              f"{daemon.first_key_file} (use it as `Authorization: Bearer <key>`, or "
              "`appliance tui --key \"$(cat FILE)\"`)", file=sys.stderr)
    print(f"appliance serve: http://{config.host}:{config.port} home={config.home} "
          f"model={daemon.models.active_version() or 'rule-based'}", file=sys.stderr, flush=True)
    try:
        # uvicorn finishes requests in flight on SIGTERM/SIGINT, then runs the app's
        # shutdown hook, which stops a running job and closes the store
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning",
                    timeout_graceful_shutdown=10, access_log=False)
    finally:
        daemon.close()
    return 0
