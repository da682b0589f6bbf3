"""`python -m server [serve|migrate|ledger-audit]` — run the server and its operator commands.

    serve         run the HTTP server (default): config.yaml + environment
    migrate       apply the database migrations and exit
    ledger-audit  prove the books (exit status 1 and a report when anything is off)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from server.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "ledger-audit"])
    args = parser.parse_args(argv)
    config = load_config()

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


if __name__ == "__main__":
    sys.exit(main())
