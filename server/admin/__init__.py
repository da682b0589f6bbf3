"""The admin web panel ("total backend", SPEC §6, issue 5): server-rendered pages under /admin.

`install(app)` mounts the blueprint and its static files (CSS and a little JS, all served from here:
no CDN). See docs/admin.md for the pages, the roles and how to create the first owner.
"""

from __future__ import annotations

from sanic import Sanic


def install(app: Sanic) -> None:
    from server.admin.views import bp

    app.blueprint(bp)
    try:
        from sanic_ext.extensions.openapi import openapi

        openapi.exclude(bp=bp)  # the panel is not part of the Mini Programs' API document
    except ImportError:
        pass
