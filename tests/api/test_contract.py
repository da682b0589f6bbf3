"""The published contract (issue 10): the committed files are what the server serves, the OpenAPI
document is valid and complete, the event table of docs/api.md is the declared one, errors speak
Chinese (or English) with money in yuan, and the docs viewer is served from here."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from miniprogram_api.error_catalog import all_error_classes, catalog
from models.events import EVENTS, docs_table, json_schema
from server.__main__ import CONTRACT_FILES, contract_text
from tests.api import _support as S

ROOT = Path(__file__).resolve().parents[2]


async def served(live, path: str, **kw):
    async with live.client() as c:
        return await c.get(path, **kw)


# --- the committed files ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(CONTRACT_FILES))
def test_the_committed_contract_files_are_current(kind):
    committed = (ROOT / CONTRACT_FILES[kind]).read_text(encoding="utf-8")
    assert committed == contract_text(kind), (
        f"{CONTRACT_FILES[kind]} is stale: run `python -m server {kind} > {CONTRACT_FILES[kind]}` and commit it")


@pytest.mark.asyncio
async def test_the_server_serves_exactly_the_committed_documents(live):
    assert (await served(live, "/docs/openapi.json")).json() == json.loads((ROOT / "docs/openapi.json").read_text()), (
        "run `python -m server openapi > docs/openapi.json`")
    assert (await served(live, "/api/v1/errors")).json() == json.loads((ROOT / "docs/errors.json").read_text()), (
        "run `python -m server errors > docs/errors.json`")


def test_the_openapi_document_validates():
    from openapi_spec_validator import validate

    validate(json.loads(contract_text("openapi")))


def test_the_events_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(json_schema())


# --- the document is complete and exact -------------------------------------------------------------
def document() -> dict:
    return json.loads(contract_text("openapi"))


def test_the_document_has_a_title_servers_and_a_description():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert "Mini Program" in doc["info"]["title"] and doc["info"]["title"] != "API"
    assert len(doc["info"]["description"]) > 500 and doc["servers"]


def operations(doc):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_operation_has_a_description_an_example_and_its_errors():
    doc = document()
    for method, path, op in operations(doc):
        where = f"{method} {path}"
        assert op.get("summary") and len(op.get("description", "")) > 20, where
        assert op.get("operationId"), where
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert ok, where
        for status in ok:
            for media, content in op["responses"][status].get("content", {}).items():  # none: 204
                if media == "application/json":
                    assert "example" in content, f"{where} {status}: no example"
        if "requestBody" in op and "application/json" in op["requestBody"]["content"]:
            assert "example" in op["requestBody"]["content"]["application/json"], where
        if op["security"]:
            assert {"401", "403"} <= set(op["responses"]), where
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                codes = response["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]["enum"]
                assert codes and all(f"`{c}`" in response["description"] for c in codes), f"{where} {status}"


def test_publish_lists_only_what_it_can_answer():
    op = document()["paths"]["/api/v1/publisher/tasks"]["post"]
    codes = {c for s, r in op["responses"].items() if s >= "400"
             for c in r["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]["enum"]}
    assert "slot_taken" not in codes
    assert {"insufficient_balance", "price_out_of_range", "idempotency_conflict", "invalid_input", "unauthorized"} <= codes
    assert {"200", "201"} <= set(op["responses"])  # a replay and a creation


def test_every_example_fits_its_schema():
    doc = document()
    components = doc["components"]
    checked = 0
    for method, path, op in operations(doc):
        pairs = []
        for status, response in op["responses"].items():
            for content in response.get("content", {}).values():
                if "example" in content:
                    pairs.append((f"{status}", content["schema"], content["example"]))
                for name, ex in content.get("examples", {}).items():
                    value = components["examples"][ex["$ref"].rsplit("/", 1)[-1]]["value"] if "$ref" in ex else ex["value"]
                    pairs.append((f"{status} {name}", content["schema"], value))
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            pairs.append(("body", body["schema"], body["example"]))
        for p in op.get("parameters", []):
            if "example" in p:
                pairs.append((p["name"], p["schema"], p["example"]))
        for label, schema, value in pairs:
            errors = list(Draft202012Validator({**schema, "components": components}).iter_errors(value))
            assert not errors, f"{method} {path} {label}: {errors[0].message}"
            checked += 1
    assert checked > 150


def test_query_parameters_are_plain_values_and_cursors_are_one_type():
    doc = document()
    schemas = doc["components"]["schemas"]
    for method, path, op in operations(doc):
        for p in op.get("parameters", []):
            schema = p["schema"]
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
            assert schema.get("type") in ("integer", "string"), f"{method} {path} ?{p['name']}: {schema}"
        for p in op.get("parameters", []):
            if p["name"] == "cursor":
                assert p["schema"] == {"$ref": "#/components/schemas/Cursor"}
    pages = [name for name in schemas if name.endswith("Page")]
    assert len(pages) >= 5
    for name in pages:
        string, null = schemas[name]["properties"]["next_cursor"]["anyOf"]
        assert (string["type"], string["pattern"], null) == ("string", schemas["Cursor"]["pattern"], {"type": "null"}), name


def test_states_kinds_and_events_are_enums():
    schemas = document()["components"]["schemas"]
    from models.ledger import EntryKind
    from models.orders import OrderEvent, OrderStatus
    from models.tasks import TaskStatus
    from models.withdrawals import WithdrawalStatus

    for enum in (OrderStatus, TaskStatus, WithdrawalStatus, EntryKind, OrderEvent):
        assert schemas[enum.__name__]["enum"] == [e.value for e in enum], enum.__name__
    assert schemas["OrderOut"]["properties"]["finished_by"]["anyOf"][0] == {"$ref": "#/components/schemas/OrderEvent"}
    assert schemas["PostingOut"]["properties"]["kind"] == {"$ref": "#/components/schemas/EntryKind"}
    assert set(schemas["ErrorCode"]["enum"]) == {e["code"] for e in catalog()["errors"]}
    event_types = {v["properties"]["type"]["const"] for v in json_schema()["oneOf"]}
    assert event_types == set(EVENTS)


def test_responses_are_closed_and_complete():
    """No response object may carry undocumented keys, and every documented key is always sent."""
    schemas = document()["components"]["schemas"]
    for name, schema in schemas.items():
        if schema.get("type") == "object" and "properties" in schema and name.endswith(("Out", "Page")):
            assert schema.get("additionalProperties") is False, name
            assert set(schema.get("required", [])) == set(schema["properties"]), name


# --- docs/api.md ---------------------------------------------------------------------------------
def test_the_event_table_in_docs_is_the_declared_one():
    text = (ROOT / "docs/api.md").read_text(encoding="utf-8")
    table = docs_table()
    assert table in text, "the event table of docs/api.md is stale: paste models.events.docs_table() there"
    documented = set(re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", text, re.M))
    assert documented == set(EVENTS)


def test_the_docs_show_the_pages_subscription_messages_open():
    import yaml

    text = (ROOT / "docs/api.md").read_text(encoding="utf-8")
    templates = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))["wechat"]["subscription_templates"]
    for end, events in templates.items():
        for event, t in events.items():
            assert f"| {end} | `{event}` | `{t['page']}` |" in text, f"docs/api.md: the page of {end}/{event}"


def status_mentions(text: str) -> list[tuple[str, int]]:
    """(code, status) pairs docs/api.md states, in the three ways it writes them: "`code` (403",
    "`403 code`", and "403 `code`, `code` or `code`" (a status before a list of codes); code blocks
    left out. Words that are not error codes (field names in such lists) are for the caller to drop."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    pairs = [(m[1], int(m[2])) for m in re.finditer(r"`(\w+)` \(([45]\d\d)\b", text)]
    pairs += [(m[2], int(m[1])) for m in re.finditer(r"`([45]\d\d) (\w+)`", text)]
    for m in re.finditer(r"\b([45]\d\d)\**\s+((?:`\w+`(?:,\s*|\s+or\s+|\s+and\s+))*`\w+`)", text):
        pairs += [(code, int(m[1])) for code in re.findall(r"`(\w+)`", m[2])]
    return pairs


def test_the_error_statuses_docs_api_md_states_are_the_catalogs():
    """Every "`code` (NNN)", "`NNN code`" and "NNN `code`, `code`" of docs/api.md says the status
    docs/errors.json gives that code (the take row once listed 403 `own_task` among the 409s)."""
    statuses = {e["code"]: e["status"] for e in json.loads((ROOT / "docs/errors.json").read_text())["errors"]}
    mentions = [(code, status) for code, status in status_mentions((ROOT / "docs/api.md").read_text(encoding="utf-8"))
                if code in statuses]
    assert len(mentions) > 20 and ("own_task", 403) in mentions, mentions  # the parser still reads the document
    assert [f"{code} ({status}), catalog: {statuses[code]}" for code, status in mentions if statuses[code] != status] == []


def test_the_login_example_of_docs_api_md_names_every_field_of_the_answer():
    """The "// → { token, ..., user: { ... } }" of the login example: LoginOut's fields and UserOut's."""
    text = (ROOT / "docs/api.md").read_text(encoding="utf-8")
    example = re.search(r"request\('POST', '/api/v1/worker/login'.*?\n// → (\{.*?\} \})\n", text, re.S)
    assert example, "the login example of docs/api.md"
    body = example[1].replace("//", "")
    user = re.search(r"user: \{([^}]*)\}", body)
    names = lambda s: {n.strip() for n in s.split(",") if n.strip()}  # noqa: E731
    schemas = document()["components"]["schemas"]
    assert names(user[1]) == set(schemas["UserOut"]["properties"])
    assert names(body[1:user.start()]) | {"user"} == set(schemas["LoginOut"]["properties"])


def test_the_error_status_parser_reads_each_way_of_writing_it():
    text = ("`invalid_login_code` (400): ...; `appeals_paused` (403, `until`); `401 token_expired`; "
            "losers: 409 `slot_taken`, `task_closed` or `own_task`; **422 `prohibited_content`**; takes answer 403\n`worker_limited`"
            "\n```js\n// 500 `not_this`\n```")
    assert status_mentions(text) == [
        ("invalid_login_code", 400), ("appeals_paused", 403), ("token_expired", 401),
        ("slot_taken", 409), ("task_closed", 409), ("own_task", 409), ("prohibited_content", 422), ("worker_limited", 403)]


# --- errors ---------------------------------------------------------------------------------------
def test_every_error_has_chinese_and_english_and_money_in_yuan():
    for entry in catalog()["errors"]:
        zh, en = entry["message"]["zh-CN"], entry["message"]["en"]
        assert re.search(r"[\u4e00-\u9fff]", zh), entry["code"]
        assert zh != en and en.isascii(), entry["code"]
        assert " fen" not in en and "分" not in zh.replace("部分", "").replace("分配", ""), entry["code"]
        assert entry["meaning"], entry["code"]


def test_every_raise_site_that_words_its_own_message_words_it_in_both_languages():
    """A DomainError raised with its own text must pass zh= too (the class's Chinese would not match)."""
    names = {c.__name__ for c in all_error_classes()} | {"InvalidSettings", "NotFound", "InvalidInput"}
    missing = []
    for package in ("models", "miniprogram_api", "server"):
        for path in (ROOT / package).rglob("*.py"):
            if "admin" in path.parts or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names and node.args \
                        and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                    if isinstance(node.args[0], ast.JoinedStr):
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: an f-string message (use a template over details)")
                    elif not any(k.arg == "zh" for k in node.keywords):
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: no zh=")
    assert not missing, "\n".join(missing)


@pytest.mark.asyncio
async def test_messages_follow_accept_language_and_show_yuan(live):
    alice = await live.login("publisher", "alice")
    body = {"title": "t", "instructions": "i", "unit_price_fen": 99, "request_id": "price"}
    async with live.client(alice.token) as a:
        zh = await a.post("/api/v1/publisher/tasks", json=body)
        en = await a.post("/api/v1/publisher/tasks", json=body, headers={"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"})
        prefers_zh = await a.post("/api/v1/publisher/tasks", json=body, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert zh.json()["error"] == {"code": "price_out_of_range", "message": "单价必须在 ¥1.00 到 ¥1,000.00 之间。",
                                  "details": {"min_fen": 100, "max_fen": 100_000}}
    assert zh.headers["content-language"] == "zh-CN" and prefers_zh.json() == zh.json()
    assert en.json()["error"]["message"] == "The unit price must be between ¥1.00 and ¥1,000.00."
    assert en.json()["error"]["code"] == zh.json()["error"]["code"] and en.headers["content-language"] == "en"


@pytest.mark.asyncio
async def test_field_errors_are_worded_in_the_readers_language(live):
    alice = await live.login("publisher", "alice")
    async with live.client(alice.token) as a:
        zh = (await a.post("/api/v1/publisher/tasks", json={"title": "t" * 65, "instructions": "i", "unit_price_fen": 100})).json()
        en = (await a.post("/api/v1/publisher/tasks", json={"title": "t" * 65, "instructions": "i", "unit_price_fen": 100},
                           headers={"Accept-Language": "en"})).json()
    assert zh["error"]["details"]["fields"] == {"title": "最多 64 个字符", "request_id": "必填"}
    assert en["error"]["details"]["fields"] == {"title": "at most 64 characters", "request_id": "required"}


@pytest.mark.asyncio
async def test_errors_sanic_raises_have_the_same_shape(live):
    r = await served(live, "/api/v1/no-such-thing")
    assert r.status_code == 404 and r.json() == {"error": {"code": "not_found", "message": "未找到。"}}
    async with live.client() as c:
        r = await c.delete("/api/v1/errors")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.asyncio
async def test_the_error_catalog_is_served_without_a_token(live):
    r = await served(live, "/api/v1/errors")
    codes = {e["code"]: e for e in r.json()["errors"]}
    assert r.json()["default_language"] == "zh-CN"
    assert codes["slot_taken"]["status"] == 409 and codes["price_out_of_range"]["details"]["properties"] == {
        "max_fen": {"type": "integer"}, "min_fen": {"type": "integer"}}
    for entry in r.json()["errors"]:
        Draft202012Validator.check_schema(entry["details"])


# --- the viewer -------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_docs_viewer_loads_nothing_from_elsewhere(live):
    page = await served(live, "/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/docs/") for s in sources), sources
    for s in sources:
        r = await served(live, s)
        assert r.status_code == 200 and len(r.content) > 500, s
    assert "validatorUrl: null" in page.text  # Swagger UI would otherwise call validator.swagger.io
    assert (await served(live, "/docs/static/../../server/config.py")).status_code == 404


@pytest.mark.asyncio
async def test_every_documented_route_is_routed(live):
    routed = {(m, S.PARAM.sub(lambda x: "{" + x.group(1) + "}", p)) for m, p, _ in S.api_routes(live.app)} - {("GET", "/api/v1/ws")}
    documented = {(m, p) for m, p, _ in operations(document())}
    assert routed == documented
