"""WeChat Pay's bill files: read exactly (yuan text → integer fen), refuse what does not add up,
and never send a signed download request to another host."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from wechat import bills
from wechat.config import CHINA_TZ
from wechat.errors import BadPayload

AT = dt.datetime(2026, 3, 1, 9, 30, 5, tzinfo=CHINA_TZ)


def test_a_trade_bill_reads_back_exactly_what_was_written():
    rows = [bills.TradeRow(AT, "wx1", "1900000001", "4200001", "R1", "o" + "a" * 27, "JSAPI", "SUCCESS", 12_345),
            bills.TradeRow(AT, "wx1", "1900000001", "4200001", "R1", "o" + "a" * 27, "JSAPI", "REFUND", 0,
                           "5030001", "RF1", 2_000, "SUCCESS")]
    text = bills.render_trade_bill(rows)
    assert "`123.45" in text and text.startswith("交易时间,")
    assert bills.parse_trade_bill(text).rows == rows


def test_a_fund_bill_reads_back_exactly_what_was_written():
    rows = [bills.FundRow(AT, "1330001", "F1", "商家转账", "商家转账到零钱", "支出", 9_901, 0, "API", "提现", "W000000000001")]
    parsed = bills.parse_fund_bill(bills.render_fund_bill(rows))
    assert parsed.rows == rows and parsed.rows[0].is_out


def test_amounts_are_converted_without_floats():
    assert [bills.fen(t) for t in ("0.01", "`1.10", "100000.00", "0.29")] == [1, 110, 10_000_000, 29]
    with pytest.raises(BadPayload):
        bills.fen("1.005")


def test_a_bill_whose_rows_do_not_add_up_to_its_summary_is_refused():
    rows = [bills.TradeRow(AT, "wx1", "1", "42", "R1", "o", "JSAPI", "SUCCESS", 100)]
    text = bills.render_trade_bill(rows).replace("`1.00,`0.00,`0.00", "`2.00,`0.00,`0.00")
    with pytest.raises(BadPayload):
        bills.parse_trade_bill(text)
    with pytest.raises(BadPayload):
        bills.parse_trade_bill("not,a,bill\n")


@pytest.mark.asyncio
async def test_a_download_url_on_another_host_is_never_requested():
    called = []

    class Http:
        async def request(self, *a, **k):
            called.append(a)

    pay = SimpleNamespace(base_url="https://api.mch.weixin.qq.com", _http=Http())
    for url in ("https://evil.example/v3/billdownload/file?token=1", "http://api.mch.weixin.qq.com/v3/billdownload/file"):
        with pytest.raises(BadPayload):
            await bills.download(pay, {"download_url": url, "hash_type": "SHA1", "hash_value": "x"})
    assert called == []
