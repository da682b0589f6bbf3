"""What the ledger's memos and the audit log's details say, in the operator's language (issue 13
defect 7): "1 referral rewards" and "review_timeout" in the Chinese UI, "amount_fen=5000" and
"take_window_s: 8 → 1800" in the audit log. Now: "1 笔邀请奖励", "审核超时自动通过", "金额 ¥50.00",
"接单时限 8 秒 → 30 分钟".

The stored rows keep their codes (they are data, read by code and by reconciliation); only their
display changes, here, in one place for the ledger tables, the histories and the audit log.
"""

from __future__ import annotations

import re
from typing import Any

from server.admin import units
from server.admin.settings_form import LABELS as SETTING_LABELS
from server.admin.settings_form import describe as describe_setting

_REFERRALS = re.compile(r"^(\d+) referral rewards?$")
# Memos the domain writes in English (models/tasks.py, models/orders.py).
_MEMOS = {
    "take window ended": "Refund of untaken slots: the take window ended",
    "cancelled by the publisher": "Refund of untaken slots: cancelled by the publisher",
    "abandoned after the take window": "Refund: abandoned after the take window",
}
# Audit data keys as people read them; *_fen values are shown in yuan.
FIELD_LABELS = {
    "amount_fen": "Amount", "fee_fen": "Fee", "refund_fen": "Refund", "paid_fen": "Paid to the worker",
    "worker_referral_fen": "Worker inviter reward", "publisher_referral_fen": "Publisher inviter reward",
    "unit_price_fen": "Price", "held_fen": "Held", "expected_fen": "Expected", "quantity": "Slots",
    "slots_refunded": "Slots refunded", "task_id": "Task", "entry_id": "Journal entry", "rewards": "Rewards",
    "inviter_id": "Inviter", "end": "End", "ip": "IP", "username": "Username", "role": "Role",
    "transaction_id": "WeChat transaction", "transfer_bill_no": "WeChat bill", "title": "Title",
    "bill_date": "Bill day", "differences": "New differences", "kind": "Kind", "error": "Error",
    "problems": "Problems", "source": "Source", "state": "State", "note": "Note",
    "min_approval_bp": "Minimum approval rate (basis points)", "min_completed_orders": "Minimum completed orders",
    "compliance_hold": "Held by the compliance gate", "criterion": "Criterion",
    "list": "List exported", "filters": "Filters", "rows": "Rows", "matching": "Rows matching (the file was cut)",
}
_TRANSLATED_VALUES = {"end", "role", "kind", "list"}


_TERM_PART = re.compile(r"^term:(?P<term>.*)\((?P<category>[a-z_]+)\)@(?P<field>[a-z_]+)$")
_VERDICT_PART = re.compile(r"^wechat:(?P<check>text|image):(?P<verdict>[a-z]+)(?::(?P<label>.+))?$")


def held_because(t, reason: str | None) -> list[str]:
    """Why the compliance gate held a task (models/compliance.py hold_reason: `term:<term>(<category>)@<field>`
    and WeChat's verdicts `wechat:text:risky:<label>`, joined by "; ") in the page's language; a
    part of another shape is shown as it is."""
    out = []
    for part in (reason or "").split("; "):
        if m := _TERM_PART.match(part):
            out.append(t("Prohibited term “{term}” ({category}) in the {field}", term=m["term"],
                         category=t("category." + m["category"]), field=t("field." + m["field"])))
        elif m := _VERDICT_PART.match(part):
            check, verdict = t("check." + m["check"]), t("verdict." + m["verdict"])
            out.append(t("{check}: {verdict} (label {label})", check=check, verdict=verdict, label=m["label"])
                       if m["label"] else f"{check}: {verdict}")
        elif part:
            out.append(part)
    return out


def memo(t, kind: Any, text: str | None) -> str:
    """A ledger entry's memo as the operator reads it (`t`: the page's translator)."""
    if not text:
        return ""
    kind = str(getattr(kind, "value", kind) or "")
    if kind in ("order_complete", "order_fail") and re.fullmatch(r"[a-z_]+", text):
        return t("event." + text)
    if m := _REFERRALS.match(text):
        return t("{n} referral rewards", n=int(m[1]))
    if text in _MEMOS:
        return t(_MEMOS[text])
    if kind == "recharge":
        return t("Merchant order {no}", no=text)
    return text  # an operator's own words (an adjustment's reason)


def _value(t, key: str, value: Any) -> str:
    if key.endswith("_fen") and isinstance(value, int):
        return units.yuan(value)
    if key in _TRANSLATED_VALUES and isinstance(value, str):
        return t(value)
    if isinstance(value, list):
        return "；".join(str(v) for v in value[:5]) + ("…" if len(value) > 5 else "")
    if isinstance(value, dict):  # an export's filters: as the query string said them
        return "；".join(f"{k}={v}" for k, v in value.items()) or "—"
    if value is None:
        return "—"
    return str(value)


def details(t, action: str, data: dict | None, *, states: bool = True) -> list[str]:
    """An audit row's data as short phrases: ["接单时限 8 秒 → 30 分钟", "金额 ¥50.00"]. `t`: the
    page's translator; `states=False` leaves out "from → to" (a history shows it beside the action)."""
    if not data:
        return []
    lang = t.lang
    out: list[str] = []
    if action == "settings.update":
        for key, change in data.items():
            if isinstance(change, dict) and "old" in change:
                label = t(SETTING_LABELS.get(key, key))
                out.append(f"{label} {describe_setting(lang, key, change['old'])} → {describe_setting(lang, key, change['new'])}")
        return out
    if action == "appeal_rule.update" and isinstance(data.get("old"), dict) and isinstance(data.get("new"), dict):
        # {"kind", "old": {"enabled", <param>…}, "new": {…}, "version"}: each value that changed, named
        out.append(f"{t('Version')} {data.get('version', '—')}")
        for key in dict.fromkeys([*data["old"], *data["new"]]):
            old, new = data["old"].get(key), data["new"].get(key)
            if old != new:
                label = t("Enabled") if key == "enabled" else t(key)
                show = (lambda v: t("On") if v else t("Off")) if key == "enabled" else (lambda v: "—" if v is None else str(v))
                out.append(f"{label} {show(old)} → {show(new)}")
        return out
    if states and "from" in data and "to" in data:
        out.append(f"{t(str(data['from']))} → {t(str(data['to']))}")
    for key, value in data.items():
        if key in ("from", "to"):
            continue
        if isinstance(value, dict) and "old" in value:
            out.append(f"{t(FIELD_LABELS.get(key, key))} {_value(t, key, value['old'])} → {_value(t, key, value['new'])}")
            continue
        if key == "compliance_hold" and isinstance(value, str):
            out.append(f"{t(FIELD_LABELS[key])} {'；'.join(held_because(t, value))}")
            continue
        out.append(f"{t(FIELD_LABELS.get(key, key))} {_value(t, key, value)}")
    return out
