"""Schemathesis against the live app's /docs/openapi.json: for every documented operation (both
ends, the logins, the uploads and the public routes), bounded generated requests (valid and invalid)
with a real token of the operation's end; never a 5xx, and every response's status code and body
conform to the document.

The server runs on the test's event loop, so the (synchronous) schemathesis calls run in a thread.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from tests.api import _support as S  # noqa: E402

pytestmark = pytest.mark.asyncio

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 15
# The WebSocket is not an HTTP request/response (docs/api.md, docs/events.json): not in the document.
# Logout is not fuzzed: it would end the fuzzing user's sessions for every operation after it
# (tested in tests/api/test_sessions.py).
SKIP = {("GET", "/api/v1/ws"), ("POST", "/api/v1/worker/logout"), ("POST", "/api/v1/publisher/logout")}


async def load(live):
    import httpx

    async with httpx.AsyncClient(base_url=live.base) as c:
        r = await c.get("/docs/openapi.json")
    assert r.status_code == 200
    return r.json()


def run_operation(schema, op, base_url: str, token: str, mode: GenerationMode, failures: list[str],
                  max_examples: int = MAX_EXAMPLES) -> int:
    """Fuzz one operation; the number of requests it actually sent (responses the server gave)."""
    import requests

    session = requests.Session()
    sent = 0

    def count(response, *args, **kwargs):
        nonlocal sent
        sent += 1

    session.hooks["response"].append(count)

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def test(case):
        if len(mine) >= 2:  # enough to diagnose this operation
            return
        try:
            case.call_and_validate(base_url=base_url, session=session, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
        except Exception as exc:  # a FailureGroup of the checks that failed
            mine.append(f"{op.method.upper()} {op.path} [{mode.value}] {case.formatted_path} query={case.query} body={str(case.body)[:200]}: "
                        f"{type(exc).__name__}: {str(exc)[:700]}")

    mine: list[str] = []
    try:
        test()
    except Exception as exc:  # schemathesis re-raises what it recorded, after hypothesis is done
        if not mine:
            mine.append(f"{op.method.upper()} {op.path} [{mode.value}]: {type(exc).__name__}: {str(exc)[:900]}")
    failures.extend(mine)
    return sent


def ops_of(path: str, end: str) -> bool:
    """The operations one run covers: an end's own, or (end "public") those under no end."""
    if end == "public":
        return not path.startswith(("/api/v1/worker/", "/api/v1/publisher/"))
    return path.startswith(f"/api/v1/{end}/")


@pytest.fixture(autouse=True)
def generous_rate_limits(monkeypatch):
    """Generated cases would mostly hit the rate limits (429 is documented, so that would pass, but
    cover little): the fuzz runs with limits far above what it sends."""
    from server import ratelimit

    for name in list(ratelimit.RULES):
        monkeypatch.setitem(ratelimit.RULES, name, ratelimit.Rule(100_000, 60))


Op = tuple[str, str]  # (METHOD, documented path)


async def fuzz(live, end: str, max_examples: int = MAX_EXAMPLES) -> tuple[list[str], dict[Op, int]]:
    """Fuzz every operation of one run (an end, or "public"): the failures, and the requests each
    operation actually sent."""
    raw = await load(live)
    schema = schemathesis.openapi.from_dict(raw)
    who = await live.login("worker" if end == "public" else end, f"fuzz{end}")
    if end == "publisher":
        await live.recharge(who, 50_000)
    failures: list[str] = []
    sent: dict[Op, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP or not ops_of(op.path, end):
            continue
        spec = raw["paths"][op.path][op.method.lower()]
        inputs = spec.get("parameters") or spec.get("requestBody") or spec.get("security")
        key = (op.method.upper(), op.path)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if inputs else (GenerationMode.POSITIVE,):
            n = await asyncio.to_thread(run_operation, schema, op, live.base, who.token, mode, failures, max_examples)
            sent[key] = sent.get(key, 0) + n
    return failures, sent


def unexercised(raw: dict, sent: dict[Op, int], ends=("worker", "publisher", "public")) -> list[Op]:
    """The documented operations of these runs (all but SKIP) that no request reached."""
    documented = {(m.upper(), p) for p, ops in raw["paths"].items() for m in ops
                  if m in ("get", "put", "post", "patch", "delete") and any(ops_of(p, end) for end in ends)}
    return sorted(op for op in documented - SKIP if not sent.get(op))


async def fuzz_and_check(live, end: str) -> None:
    failures, sent = await fuzz(live, end)
    assert not failures, "\n\n".join(failures)
    assert not unexercised(await load(live), sent, (end,)), f"fuzzed without a single request: {unexercised(await load(live), sent, (end,))}"


async def test_worker_operations_conform_to_the_document(live):
    await fuzz_and_check(live, "worker")


async def test_publisher_operations_conform_to_the_document(live):
    await fuzz_and_check(live, "publisher")


async def test_public_operations_conform_to_the_document(live):
    await fuzz_and_check(live, "public")


async def test_the_fuzz_covers_every_operation(live):
    """Every documented operation (but SKIP) is requested at least once by one of the three runs:
    the runs are made (a couple of examples each) and the requests each operation sent counted."""
    raw = await load(live)
    sent: dict[Op, int] = {}
    for end in ("worker", "publisher", "public"):
        _, mine = await fuzz(live, end, max_examples=2)
        assert not set(mine) & set(sent), f"operations fuzzed by two runs: {set(mine) & set(sent)}"
        sent.update(mine)
    assert not unexercised(raw, sent), f"documented but never requested by the fuzz: {unexercised(raw, sent)}"
    assert all(sent.values()) and len(sent) > 40, sent
    assert SKIP - {("GET", "/api/v1/ws")} <= {(m.upper(), p) for p, ops in raw["paths"].items() for m in ops}, \
        "SKIP names operations the document does not have"


async def test_every_documented_operation_is_a_route_and_vice_versa(live):
    raw = await load(live)
    documented = {(m.upper(), p) for p, ops in raw["paths"].items() for m in ops if p.startswith("/api/v1/")}
    routed = {(m, S.PARAM.sub(lambda x: "{" + x.group(1) + "}", p)) for m, p, _ in S.api_routes(live.app)}
    assert routed - {("GET", "/api/v1/ws")} <= documented, routed - documented
    for (method, path) in documented - {("GET", "/api/v1/ws")}:
        op = raw["paths"][path][method.lower()]
        public = (method, S.PARAM.sub(lambda x: "{" + x.group(1) + "}", path)) in {
            (m, S.PARAM.sub(lambda x: "{" + x.group(1) + "}", p)) for m, p in S.PUBLIC}
        assert bool(op.get("security")) != public, f"{method} {path}: security is {op.get('security')}"
        assert "401" in op["responses"] or public, f"{method} {path}: 401 not documented"


async def test_the_document_lists_no_websocket(live):
    raw = await load(live)
    assert "/api/v1/ws" not in raw["paths"]


async def test_upload_operations_are_fully_documented(live):
    raw = await load(live)
    for end in ("worker", "publisher"):
        post = raw["paths"][f"/api/v1/{end}/uploads"]["post"]
        assert "multipart/form-data" in post.get("requestBody", {}).get("content", {})
        get = raw["paths"][f"/api/v1/{end}/uploads/{{ref}}"]["get"]
        assert "application/json" not in get["responses"]["200"]["content"]
