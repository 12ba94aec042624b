"""One module per `appliance` verb (or verb group); each exposes register(subparsers)."""
