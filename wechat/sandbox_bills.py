"""The sandbox's bill routes: WeChat Pay's daily bills built from what the sandbox itself processed.

SANDBOX ONLY (mounted by `wechat/sandbox.py` on its blueprint):

  /sandbox/pay/v3/bill/tradebill?bill_date=&bill_type=ALL        GET  → {hash_type, hash_value, download_url}
  /sandbox/pay/v3/bill/fundflowbill?bill_date=&account_type=      GET  → same
  /sandbox/pay/v3/billdownload/file?token=                        GET  → the CSV file (not signed, as on WeChat)

The trade bill lists every order paid on that day (Beijing time) and every refund planted with
`plant_refund`; the fund-flow bill of the OPERATION account lists every merchant transfer that
succeeded that day. Unlike WeChat, today's bill can be asked for (it holds what happened so far),
so a demo need not wait until tomorrow. Tests plant differences by editing the state (an amount, an
order we never heard of) or with `plant_refund`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sanic import Blueprint, HTTPResponse, Request

from wechat import bills
from wechat.config import CHINA_TZ


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).astimezone(CHINA_TZ)
    except ValueError:
        return None


def plant_refund(state, out_trade_no: str, refund_fen: int, at: dt.datetime | None = None) -> dict[str, Any]:
    """A refund WeChat made for one of the orders (as an operator could in the merchant platform)."""
    order = state.orders[out_trade_no]
    refund = {"out_trade_no": out_trade_no, "refund_fen": refund_fen, "at": (at or dt.datetime.now(CHINA_TZ)).isoformat(),
              "refund_id": f"5030{secrets.randbelow(10**16):016d}", "out_refund_no": f"RF{secrets.token_hex(6)}",
              "order": order}
    _refunds(state).append(refund)
    return refund


def _refunds(state) -> list[dict[str, Any]]:
    if not hasattr(state, "bill_refunds"):
        state.bill_refunds = []
    return state.bill_refunds


def trade_rows(state, day: dt.date) -> list[bills.TradeRow]:
    rows = []
    for o in state.orders.values():
        at = _when(o.get("success_time"))
        if o.get("trade_state") in ("SUCCESS", "REFUND") and at is not None and at.date() == day:
            rows.append(bills.TradeRow(at, o["appid"], o["mchid"], o["transaction_id"], o["out_trade_no"], o["openid"],
                                       "JSAPI", "SUCCESS", o["amount_total"]))
    for r in _refunds(state):
        at, o = _when(r["at"]), r["order"]
        if at is not None and at.date() == day:
            rows.append(bills.TradeRow(at, o["appid"], o["mchid"], o.get("transaction_id", ""), o["out_trade_no"], o["openid"],
                                       "JSAPI", "REFUND", 0, r["refund_id"], r["out_refund_no"], r["refund_fen"], "SUCCESS"))
    return sorted(rows, key=lambda r: r.traded_at)


def fund_rows(state, day: dt.date, account_type: str) -> list[bills.FundRow]:
    if account_type != "OPERATION":
        return []
    rows = []
    for b in state.transfers.values():
        at = _when(b.get("update_time"))
        if b.get("state") == "SUCCESS" and at is not None and at.date() == day:
            rows.append(bills.FundRow(at, b["transfer_bill_no"], f"F{secrets.randbelow(10**18):018d}", "商家转账",
                                      "商家转账到零钱", "支出", b["transfer_amount"], 0, "API", b.get("transfer_remark", ""),
                                      b["out_bill_no"]))
    return sorted(rows, key=lambda r: r.booked_at)


def add_routes(bp: Blueprint, st, signed, pay_error, check_merchant, prefix: str) -> None:
    files: dict[str, bytes] = {}

    def offer(request: Request, text: str) -> HTTPResponse:
        data = text.encode("utf-8")
        token = secrets.token_urlsafe(16)
        files[token] = data
        if len(files) > 200:  # bounded: the oldest links expire
            files.pop(next(iter(files)))
        url = f"{request.scheme}://{request.host}{prefix}/pay/v3/billdownload/file?token={token}"
        return signed(200, {"hash_type": "SHA1", "hash_value": bills.sha1_hex(data), "download_url": url})

    def day_of(request: Request) -> dt.date | None:
        try:
            day = dt.date.fromisoformat(request.args.get("bill_date", ""))
        except ValueError:
            return None
        return day if day <= dt.datetime.now(CHINA_TZ).date() else None

    @bp.get("/pay/v3/bill/tradebill")
    async def tradebill(request: Request):
        if (bad := check_merchant(request)) is not None:
            return bad
        day = day_of(request)
        if day is None:
            return pay_error(400, "NO_STATEMENT_EXIST", "账单日期不合法或账单不存在 (sandbox)")
        return offer(request, bills.render_trade_bill(trade_rows(st, day)))

    @bp.get("/pay/v3/bill/fundflowbill")
    async def fundflowbill(request: Request):
        if (bad := check_merchant(request)) is not None:
            return bad
        day = day_of(request)
        if day is None:
            return pay_error(400, "NO_STATEMENT_EXIST", "账单日期不合法或账单不存在 (sandbox)")
        return offer(request, bills.render_fund_bill(fund_rows(st, day, request.args.get("account_type", "BASIC"))))

    @bp.get("/pay/v3/billdownload/file")
    async def download(request: Request):
        if (bad := check_merchant(request)) is not None:
            return bad
        data = files.get(request.args.get("token", ""))
        if data is None:
            return pay_error(404, "RESOURCE_NOT_EXISTS", "账单文件不存在或已过期 (sandbox)")
        return HTTPResponse(data, status=200, content_type="text/plain; charset=utf-8")
