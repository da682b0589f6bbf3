"""The admin web panel ("total backend", SPEC §6, issue 5): server-rendered pages under /admin.

`install(app)` mounts the blueprint and its static files (CSS and a little JS, all served from here:
no CDN). See docs/admin.md for the pages, the roles and how to create the first owner.
"""

from __future__ import annotations

from sanic import Sanic


def install(app: Sanic) -> None:
    from server.admin.views import bp
    from server.admin import reconciliation  # noqa: F401  its routes join the blueprint (issue 15)
    from server.admin import appeal_records, lists, order_actions, withdrawal_queue  # noqa: F401  the lists and work queues (issue 13)
    from server.admin import compliance  # noqa: F401  held tasks, prohibited terms, appeal rules (issue 14)

    app.blueprint(bp)
    _html_errors_under_admin(app)
    try:
        from sanic_ext.extensions.openapi import openapi

        openapi.exclude(bp=bp)  # the panel is not part of the Mini Programs' API document
    except ImportError:
        pass


def _html_errors_under_admin(app: Sanic) -> None:
    """An unknown /admin/… URL (or a GET of a form's POST address) answers an HTML page in the
    panel's look, not the API's JSON error (issue 13 defect 5). Other paths keep the JSON."""
    from sanic.exceptions import MethodNotAllowed, NotFound

    from server import errors

    async def render(request, exc):
        if not request.path.startswith("/admin") or request.path.startswith("/admin/static") or request.path.endswith(".json"):
            return errors.render_sanic_error(request, exc)
        from server.admin import session, views

        request.ctx.operator = await session.current_operator(request)
        missing = isinstance(exc, NotFound)
        response = await views.show(
            request, "error.html", status=404 if missing else 405, title="Not found" if missing else "Not possible",
            message="There is no such page in the admin panel." if missing else "This address is a form's: open the page the form is on.",
        )
        await views.headers(request, response)
        return response

    app.error_handler.add(NotFound, render)
    app.error_handler.add(MethodNotAllowed, render)
