"""Fixtures for the admin panel's tests: a live server (the real app on a loopback port, as in
tests/api), operators of both roles, a browser-like client that keeps cookies and reads each form's
CSRF token, and the domain situations the queues show (an appeal, a withdrawal)."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest
import pytest_asyncio

from models import ledger, operators, orders, tasks, withdrawals
from models.operators import Operator, Role
from tests import personas
from tests.api.conftest import start_live, stop_live

PASSWORD = "correct horse battery"
_seq = itertools.count(1)
CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')
REQUEST_ID_RE = re.compile(r'name="request_id" value="([^"]*)"')


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """Tests create and log in many operators: a cheaper scrypt (the real cost is tested apart)."""
    monkeypatch.setattr(operators, "SCRYPT_N", 2**10)


@pytest_asyncio.fixture
async def live(database, tmp_path):
    live, server = await start_live(database, tmp_path)
    try:
        yield live
    finally:
        await stop_live(server)


class Panel:
    """One person's browser on the panel: cookies kept, redirects not followed (tests look at them)."""

    def __init__(self, base: str) -> None:
        self.http = httpx.AsyncClient(base_url=base, follow_redirects=False, timeout=20)
        self.token = ""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **kw) -> httpx.Response:
        r = await self.http.get(path, **kw)
        m = CSRF_RE.search(r.text) if r.headers.get("content-type", "").startswith("text/html") else None
        if m and m.group(1):
            self.token = m.group(1)
        return r

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        page = await self.get("/admin/login")
        token = CSRF_RE.search(page.text).group(1)
        self.token = ""  # that was the login form's; the session's own comes with the next page
        return await self.http.post("/admin/login", data={"csrf": token, "username": username, "password": password, "next": "/admin"})

    async def post(self, path: str, data: dict | None = None, *, csrf: str | None = None) -> httpx.Response:
        """POST a form with this session's CSRF token (or the one given; "" sends none)."""
        if csrf is None and not self.token:
            await self.get("/admin")
        body = dict(data or {})
        token = self.token if csrf is None else csrf
        if token:
            body["csrf"] = token
        return await self.http.post(path, data=body)


async def make_operator(role: Role = Role.OPERATOR, name: str | None = None) -> Operator:
    return await operators.create_operator(name or f"{role.value}{next(_seq)}", PASSWORD, role)


@pytest_asyncio.fixture
async def owner(database) -> Operator:
    return await make_operator(Role.OWNER, "boss")


@pytest_asyncio.fixture
async def operator(database) -> Operator:
    return await make_operator(Role.OPERATOR, "clerk")


@pytest_asyncio.fixture
async def panel_factory(live):
    opened: list[Panel] = []

    async def open_panel(op: Operator | None = None) -> Panel:
        p = Panel(live.base)
        opened.append(p)
        if op is not None:
            r = await p.login(op.username)
            assert r.status_code == 303, r.text
        return p

    yield open_panel
    for p in opened:
        await p.aclose()


@pytest_asyncio.fixture
async def as_owner(panel_factory, owner) -> Panel:
    return await panel_factory(owner)


@pytest_asyncio.fixture
async def as_operator(panel_factory, operator) -> Panel:
    return await panel_factory(operator)


# --- domain situations -----------------------------------------------------------------------------
async def appealed_order(price_fen: int = 500):
    """Alice publishes, Bob takes and submits, Alice rejects, Bob appeals: an order in the queue."""
    alice = await personas.publisher("alice", balance_fen=100_000)
    bob = await personas.worker("bob")
    task = await tasks.publish(alice.id, title="Scan the code", instructions="Scan it and send a screenshot.", unit_price_fen=price_fen)
    order = await orders.take(task.id, bob.id)
    await orders.submit(order.id, bob.id, proof_text="done, see screenshot")
    await orders.reject(order.id, alice.id, reason="the screenshot is blurry")
    await orders.appeal(order.id, bob.id, reason="it is sharp enough")
    return order, alice, bob


async def completed_order(price_fen: int = 500):
    alice = await personas.publisher(f"alice{next(_seq)}", balance_fen=100_000)
    bob = await personas.worker(f"bob{next(_seq)}")
    task = await tasks.publish(alice.id, title="Follow", instructions="Follow the account.", unit_price_fen=price_fen)
    order = await orders.take(task.id, bob.id)
    await orders.submit(order.id, bob.id, proof_text="followed")
    await orders.approve(order.id, alice.id)
    return order


async def pending_withdrawal(amount_fen: int = 5_000, *, funded_fen: int = 20_000, operator_id: int = 0):
    """A worker with money (a manual credit) who asks to withdraw `amount_fen`."""
    bob = await personas.worker(f"bob{next(_seq)}")
    await ledger.adjust(bob.id, funded_fen, operator_id=operator_id, reason="test funds", request_id=f"fund-{bob.id}")
    w = await withdrawals.request(bob.id, amount_fen, request_id=f"w-{next(_seq)}")
    return w, bob
