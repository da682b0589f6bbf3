"""`python -m server [serve|migrate|ledger-audit|reconcile|create-owner|openapi|events|errors|appids|new-secret]` — the server and its commands.

    serve         run the HTTP server (default): config.yaml + environment
    migrate       apply the database migrations and exit
    ledger-audit  prove the books (exit status 1 and a report when anything is off)
    reconcile     --date YYYY-MM-DD: reconcile that Beijing day with WeChat Pay's trade and fund-flow
                  bills; differences go to the admin panel's queue (nothing is changed). Exit status
                  0 clean, 1 differences found, 2 the bills could not be had (not ready, or an error)
    openapi       print the OpenAPI document the server serves (docs/openapi.json is this output)
    events        print the JSON Schema of the WebSocket events (docs/events.json)
    errors        print the error catalog, as GET /api/v1/errors serves it (docs/errors.json)
    appids        print the two Mini Programs' AppIDs as configured (config.yaml wechat.worker.appid /
                  wechat.publisher.appid, or MARKET__WECHAT__WORKER__APPID / ..._PUBLISHER__...), as
                  JSON {"worker": ..., "publisher": ...}, null when not set; read by the apps'
                  `npm run configure` (miniprogram/scripts/configure.js)
    create-owner  create the admin panel's owner account (--username NAME); the password is asked
                  twice on the terminal, or read from the environment variable MARKET_OWNER_PASSWORD,
                  or from the first line of stdin with --password-stdin. There is no default password.
                  --reset sets a new password (and the owner role) on an existing account instead.
    new-secret    print a new random MARKET_SECRET_KEY (64 characters, 384 bits); needs no configuration

A configuration that cannot be used is reported in one line on stderr ("configuration error: ...",
naming the key and where its value came from), with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from server.config import ConfigError, load_config
from wechat.config import WeChatConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve",
                        choices=["serve", "migrate", "ledger-audit", "reconcile", "create-owner", "openapi", "events", "errors", "appids",
                                 "new-secret"])
    parser.add_argument("--date", help="reconcile: the Beijing day, YYYY-MM-DD (default: yesterday)")
    parser.add_argument("--username", help="create-owner: the owner's username")
    parser.add_argument("--password-stdin", action="store_true", help="create-owner: read the password from stdin")
    parser.add_argument("--reset", action="store_true", help="create-owner: set a new password on an existing account")
    args = parser.parse_args(argv)
    if args.command == "new-secret":
        from server.keys import new_secret

        print(new_secret())
        return 0
    try:
        return _run(args)
    except (ConfigError, WeChatConfigError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command in CONTRACT_FILES:
        print(contract_text(args.command), end="")
        return 0
    config = load_config()

    if args.command == "appids":
        import json

        wechat = config.wechat or {}
        print(json.dumps({end: (wechat.get(end) or {}).get("appid") or None for end in ("worker", "publisher")}))
        return 0

    if args.command == "create-owner":
        return _create_owner(config, args)

    if args.command == "migrate":
        from models import db

        asyncio.run(db.migrate_db(config.db_url_with_pool))
        print("migrations applied")
        return 0

    if args.command == "ledger-audit":
        return asyncio.run(_audit(config))

    if args.command == "reconcile":
        from server import logs
        from server.reconciliation import run_command

        logs.setup(config, "reconcile")
        return asyncio.run(run_command(config, args.date))

    # Several processes (Sanic's workers, the embedded scheduler) share one /metrics: prometheus-client's
    # multiprocess mode, switched on before anything imports it (server/metrics.py says why).
    _prepare_metrics_dir()

    from pathlib import Path

    if config.database_url.startswith("sqlite://") and not config.database_url.startswith("sqlite://:memory:"):
        Path(config.database_url[len("sqlite://"):]).parent.mkdir(parents=True, exist_ok=True)
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from server.app import create_served_app

    # Sanic spawns its workers; each one builds its own app through this loader (the factory reads
    # the same config.yaml and environment).
    loader = AppLoader(factory=create_served_app)
    app = loader.load()
    app.prepare(host=config.host, port=config.port, workers=config.workers, access_log=config.access_log)
    Sanic.serve(primary=app, app_loader=loader)
    return 0


def _prepare_metrics_dir() -> str:
    """Point prometheus-client at an empty directory (PROMETHEUS_MULTIPROC_DIR if set, e.g. systemd's
    RuntimeDirectory, else a new temporary one); files of an earlier run would add old counts."""
    import os
    import tempfile

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="market-metrics-")
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


CONTRACT_FILES = {"openapi": "docs/openapi.json", "events": "docs/events.json", "errors": "docs/errors.json"}


def contract_text(kind: str) -> str:
    """The committed contract files, exactly as written (a test compares them with this output).

    The document does not depend on config.yaml or the environment: the defaults are used."""
    import json

    if kind == "openapi":
        from server.app import create_app
        from server.config import load_config as defaults

        from miniprogram_api.docs import build_document

        import logging

        logging.getLogger("market.wechat").setLevel(logging.ERROR)  # the sandbox warning is noise here
        data = build_document(create_app(defaults(path="/nonexistent/config.yaml", env={}), manage_db=False))
    elif kind == "events":
        from models.events import json_schema

        data = json_schema()
    else:
        from miniprogram_api.error_catalog import catalog

        data = catalog()
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


async def _audit(config) -> int:
    from models import db, ledger

    await db.init_db(config.db_url_with_pool, migrate=True)
    try:
        report = await ledger.audit()
    finally:
        await db.close_db()
    print(report.text())
    return 0 if report.ok else 1


OWNER_PASSWORD_ENV = "MARKET_OWNER_PASSWORD"


def _read_password(args) -> str | None:
    import getpass
    import os

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get(OWNER_PASSWORD_ENV):
        return os.environ[OWNER_PASSWORD_ENV]
    if not sys.stdin.isatty():
        print(f"create-owner: no terminal to ask for the password; set {OWNER_PASSWORD_ENV} or use --password-stdin", file=sys.stderr)
        return None
    first = getpass.getpass("Password for the owner: ")
    if getpass.getpass("Repeat it: ") != first:
        print("create-owner: the passwords differ", file=sys.stderr)
        return None
    return first


def _create_owner(config, args) -> int:
    import os

    username = args.username or os.environ.get("MARKET_OWNER_USERNAME")
    if not username:
        print("create-owner: --username is required", file=sys.stderr)
        return 2
    password = _read_password(args)
    if not password:
        return 2
    return asyncio.run(_store_owner(config, username, password, reset=args.reset))


async def _store_owner(config, username: str, password: str, *, reset: bool) -> int:
    from models import db, operators
    from models.errors import InvalidInput

    if config.database_url.startswith("sqlite://") and not config.database_url.startswith("sqlite://:memory:"):
        from pathlib import Path

        Path(config.database_url[len("sqlite://"):]).parent.mkdir(parents=True, exist_ok=True)
    await db.init_db(config.db_url_with_pool, migrate=True)
    try:
        existing = await operators.Operator.get_or_none(username=operators.normalize_username(username))
        if existing is not None:
            if not reset:
                print(f"create-owner: '{existing.username}' exists already (use --reset to set a new password)", file=sys.stderr)
                return 1
            await operators.set_password(existing.id, password, by=None)
            await operators.Operator.filter(id=existing.id).update(role=operators.Role.OWNER, active=True)
            print(f"owner '{existing.username}': new password set, account active")
            return 0
        op = await operators.create_operator(username, password, operators.Role.OWNER)
        print(f"owner '{op.username}' created; log in at /admin/login")
        return 0
    except InvalidInput as exc:
        print(f"create-owner: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await db.close_db()


if __name__ == "__main__":
    sys.exit(main())
