"""Every admin route, read from the router (so a new page cannot be forgotten): anonymous
visitors are sent to the login page and change nothing; a form posted without the session's CSRF
token is refused (403) and changes nothing."""

from __future__ import annotations

import re

import pytest

from models.audit import AuditLog
from tests.admin.test_control_characters import admin_routes

PARAM = re.compile(r"<([a-z_]+)(?::([a-z]+))?>")
OPEN = {"/admin/login"}  # the only page a visitor may see (and post to)


def concrete(path: str) -> str:
    return PARAM.sub(lambda m: "1" if m.group(2) == "int" else "x1", path)


def routes(app, method: str) -> list[str]:
    return [concrete(p) for m, p in admin_routes(app) if m == method and p not in OPEN]


@pytest.mark.asyncio
async def test_an_anonymous_visitor_gets_the_login_page_from_every_route(live, panel_factory):
    p = await panel_factory()
    gets, posts = routes(live.app, "GET"), routes(live.app, "POST")
    assert len(gets) > 15 and len(posts) > 20, (gets, posts)
    before = await AuditLog.all().count()
    for path in gets:
        r = await p.get(path)
        if path.endswith(".json") or path.endswith(".csv"):
            assert r.status_code in (302, 401), (path, r.status_code)
        else:
            assert r.status_code == 302 and r.headers["location"].startswith("/admin/login"), (path, r.status_code)
    for path in posts:
        r = await p.post(path, {"x": "1"}, csrf="whatever")
        assert r.status_code == 303 and r.headers["location"].startswith("/admin/login"), (path, r.status_code)
    assert await AuditLog.all().count() == before


@pytest.mark.asyncio
async def test_every_form_refuses_a_post_without_the_sessions_csrf_token(live, as_owner):
    before = await AuditLog.all().count()
    for path in routes(live.app, "POST"):
        for token in ("", "forged-token-value"):
            r = await as_owner.post(path, {"x": "1"}, csrf=token)
            assert r.status_code == 403, (path, token, r.status_code)
    assert await AuditLog.all().count() == before
