"""Control characters in the admin panel's forms and search/filter parameters: 400 invalid_input
(the panel's error page; JSON for the dashboard poll), on SQLite and on PostgreSQL (where a NUL in
a customer search answered 500), and nothing changes.

Driven by the router: every /admin route, with every field name the panel's templates and views
know (a new form field or filter is probed without anyone adding it here) plus one nobody knows.
Only the textareas, where a newline and a tab are text, are named.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.orders import Order, OrderStatus
from tests.admin.conftest import appealed_order, completed_order, pending_withdrawal
from tests.api import _support as S

pytestmark = pytest.mark.asyncio

ADMIN = Path(__file__).resolve().parents[2] / "server" / "admin"
BAD = {"NUL": "\x00", "ESC": "\x1b", "DEL": "\x7f", "C1": "\x85", "LF": "\n", "TAB": "\t", "CR": "\r"}
MULTILINE = {("POST", "/admin/appeals/<order_id:int>/decide"): {"note"},  # the panel's textareas
             ("POST", "/admin/orders/<order_id:int>/force"): {"reason"}}
PARAM = re.compile(r"<([a-z_]+)(?::[a-z]+)?>")


def field_names() -> set[str]:
    """Every form field and query parameter the panel uses: inputs in its templates, and what its
    views read (form_value / request.args / args.get)."""
    names = {"undocumented"}
    for template in (ADMIN / "templates").glob("*.html"):
        names |= set(re.findall(r'\bname="([a-z_]+)"', template.read_text(encoding="utf-8")))
    for module in ADMIN.glob("*.py"):
        source = module.read_text(encoding="utf-8")
        names |= set(re.findall(r'form_value\(request, "([a-z_]+)"', source))
        names |= set(re.findall(r'args\.get\("([a-z_]+)"', source))
    from server.admin.views import SETTINGS_FORM

    names |= {name for name, _, _ in SETTINGS_FORM}  # the settings template names its inputs from this
    return names


def admin_routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes:
        path = "/" + route.path
        if not path.startswith("/admin") or path.startswith("/admin/static"):
            continue
        out += [(m, path) for m in sorted(route.methods) if m in ("GET", "POST")]
    return sorted(out)


def fill(path: str, values: dict[str, object]) -> str:
    def sub(m):
        assert m.group(1) in values, f"{path}: no test value for {m.group(1)!r}; add one"
        return str(values[m.group(1)])

    return PARAM.sub(sub, path)


def assert_refused(r, where: str) -> None:
    assert r.status_code == 400, f"{where}: {r.status_code} {r.text[:300]}"
    if r.headers.get("content-type", "").startswith("application/json"):
        assert r.json()["error"]["code"] == "invalid_input", where
    else:
        assert 'data-code="invalid_input"' in r.text, f"{where}: {r.text[:500]}"


async def snapshot():
    snap = await S.snapshot()
    from tests.api._support import db

    snap["operators"] = [tuple(r.values()) for r in await db.fetch("SELECT id, username, role, active, session_version FROM operators ORDER BY id")]
    snap["settings"] = [tuple(r.values()) for r in await db.fetch("SELECT version FROM market_settings")]
    return snap


async def test_every_admin_form_field_and_query_parameter_refuses_control_characters(live, as_owner, owner, panel_factory):
    order, alice, bob = await appealed_order()
    done = await completed_order()
    w, worker = await pending_withdrawal()
    from models.uploads import record

    upload = await record(bob.id, "image/png", 10, "0" * 64)
    values = {"order_id": order.id, "wid": w.id, "user_id": bob.id, "task_id": done.task_id, "oid": owner.id, "ref": upload.ref,
              "did": 1}  # a reconciliation difference: none exists, the parameters are refused first
    names = sorted(field_names())
    assert {"q", "state", "publisher", "worker", "action", "note", "reason", "reference", "amount", "username", "password",
            "min_unit_price_fen"} <= set(names), names
    routes = admin_routes(live.app)
    assert len(routes) >= 25, routes
    anonymous = await panel_factory()
    before = await snapshot()
    failures = []
    for method, path in routes:
        url = fill(path, values)
        multiline = MULTILINE.get((method, path), set())
        # Every name with a NUL; every kind of control character in the route's own fields.
        probes = [(name, "NUL", "\x00") for name in names]
        own = sorted(multiline) + ["reason", "q", "undocumented"]
        probes += [(name, label, char) for name in own for label, char in BAD.items() if label != "NUL"]
        for name, label, char in probes:
            if name in multiline and label in ("LF", "TAB", "CR"):
                continue
            if True:
                value = f"1{char}2"
                try:
                    if method == "GET":
                        r = await as_owner.http.get(url, params={name: value})
                    elif name == "csrf":
                        r = await as_owner.http.post(url, data={name: value})
                    else:
                        r = await as_owner.post(url, {name: value})
                    assert_refused(r, f"{method} {path} {name} {label}")
                except AssertionError as exc:
                    failures.append(str(exc))
        # Anonymous requests too (the login form, or anything before the session check).
        r = await (anonymous.http.get(url, params={"q": "a\x00"}) if method == "GET" else anonymous.http.post(url, data={"username": "a\x00"}))
        try:
            assert_refused(r, f"anonymous {method} {path}")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:60])
    assert await snapshot() == before


async def test_a_percent_encoded_nul_in_an_upload_ref_is_not_found(as_owner):
    """Path parameters reach the handler still percent-encoded: %00 is three harmless characters."""
    r = await as_owner.get("/admin/uploads/up_%00")
    assert r.status_code == 404


async def test_the_appeal_note_keeps_its_lines_and_the_search_finds_nothing_weird(as_owner):
    order, alice, bob = await appealed_order()
    r = await as_owner.post(f"/admin/appeals/{order.id}/decide", {"decision": "worker", "note": "checked\r\n\tit is sharp"})
    assert r.status_code == 303, r.text[:300]
    decided = await Order.get(id=order.id)
    assert decided.status == OrderStatus.COMPLETED and decided.decision_note == "checked\n\tit is sharp"
    # A single-line field refuses a line break; a plain search still works.
    r = await as_owner.post(f"/admin/customers/{bob.id}/ban", {"reason": "spam\nmore"})
    assert_refused(r, "ban reason with a newline")
    r = await as_owner.get("/admin/customers", params={"q": "bob"})
    assert r.status_code == 200 and f"/admin/customers/{bob.id}" in r.text
