"""Any list of the panel as a CSV file (issue 13): the list's own filters, every matching row up to
`MAX_ROWS`, in UTF-8 with a byte order mark so Excel opens the Chinese correctly. Amounts in yuan,
times in Beijing time: the same text the page shows.

A list declares its columns once as (header, cell) pairs; `cell(row)` returns the text of one cell.
When more rows match than `MAX_ROWS`, the file says so in its last row ("仅导出前 20 000 行，共 N 行")
instead of stopping silently: narrow the filters to export the rest.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from sanic.response import HTTPResponse, raw

from models import audit
from server.admin import units

MAX_ROWS = 20_000
BOM = "\ufeff"
Column = tuple[str, Callable[[Any], Any]]
LIST_TITLES = {"tasks": "Tasks", "orders": "Orders", "audit": "Audit log", "customers": "Customers",
               "withdrawals": "Withdrawals", "appeals": "Appeals", "reconciliation": "Reconciliation",
               "held_tasks": "Held tasks"}  # the page titles, translated where the audit row is shown
CUT_NOTE = "Only the first {n} rows were exported, of {total}."


def wants_csv(request) -> bool:
    return request.args.get("format") == "csv"


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula to Excel (CSV injection): a leading quote keeps it text.
    if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not _is_number(text)):
        text = "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text.replace("¥", "").replace(",", ""))
        return True
    except ValueError:
        return False


def to_csv(columns: list[Column], rows: Iterable[Any], t: Callable[..., str], *, matching: int | None = None) -> str:
    """The file's text; `matching` (how many rows the filters match) above the rows given adds a
    last row saying the file was cut."""
    rows = list(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([t(header) for header, _ in columns])
    for row in rows:
        writer.writerow([_cell(cell(row)) for _, cell in columns])
    if matching is not None and matching > len(rows):
        writer.writerow([_cell(t(CUT_NOTE, n=_grouped(len(rows)), total=_grouped(matching)))])
    return BOM + out.getvalue()


def _grouped(n: int) -> str:
    return f"{n:,}".replace(",", " ")  # 20 000: read the same in both languages


async def matching(qs, rows: list) -> int:
    """How many rows the list's filters match (`qs`, not limited): counted only when the export
    stopped at MAX_ROWS — below that, the rows are all of them."""
    return await qs.count() if len(rows) >= MAX_ROWS else len(rows)


async def csv_response(request, name: str, columns: list[Column], rows: Iterable[Any], t: Callable[..., str],
                       now, *, matching: int | None = None) -> HTTPResponse:
    """The file, and an audit row saying who took which list out of the panel, with which filters
    and how many rows (an export carries people's names and money: it is an act like any other).
    `matching`: how many rows the filters match, when the file may have been cut (see `matching()`)."""
    rows = list(rows)
    operator = getattr(request.ctx, "operator", None)
    filters = {k: request.args.get(k) for k in request.args if k not in ("format", "lang")}
    data = {"list": LIST_TITLES.get(name, name), "filters": filters, "rows": len(rows)}
    if matching is not None and matching > len(rows):
        data["matching"] = matching
    await audit.record("operator", operator.id if operator else None, "export.csv", "export", None, data=data)
    filename = f"{name}-{units.local(now, '%Y%m%d-%H%M%S')}.csv"
    return raw(
        to_csv(columns, rows, t, matching=matching).encode("utf-8"),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"},
    )
