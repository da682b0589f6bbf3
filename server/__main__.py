"""`python -m server [serve|migrate|ledger-audit|create-owner]` — run the server and its operator commands.

    serve         run the HTTP server (default): config.yaml + environment
    migrate       apply the database migrations and exit
    ledger-audit  prove the books (exit status 1 and a report when anything is off)
    create-owner  create the admin panel's owner account (--username NAME); the password is asked
                  twice on the terminal, or read from the environment variable MARKET_OWNER_PASSWORD,
                  or from the first line of stdin with --password-stdin. There is no default password.
                  --reset sets a new password (and the owner role) on an existing account instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from server.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "ledger-audit", "create-owner"])
    parser.add_argument("--username", help="create-owner: the owner's username")
    parser.add_argument("--password-stdin", action="store_true", help="create-owner: read the password from stdin")
    parser.add_argument("--reset", action="store_true", help="create-owner: set a new password on an existing account")
    args = parser.parse_args(argv)
    config = load_config()

    if args.command == "create-owner":
        return _create_owner(config, args)

    if args.command == "migrate":
        from models import db

        asyncio.run(db.migrate_db(config.db_url_with_pool))
        print("migrations applied")
        return 0

    if args.command == "ledger-audit":
        return asyncio.run(_audit(config))

    from pathlib import Path

    if config.database_url.startswith("sqlite://") and not config.database_url.startswith("sqlite://:memory:"):
        Path(config.database_url[len("sqlite://"):]).parent.mkdir(parents=True, exist_ok=True)
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from server.app import create_app

    # Sanic spawns its workers; each one builds its own app through this loader (the factory reads
    # the same config.yaml and environment).
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(host=config.host, port=config.port, workers=config.workers, access_log=config.access_log)
    Sanic.serve(primary=app, app_loader=loader)
    return 0


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
