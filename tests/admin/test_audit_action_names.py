"""Every action the code writes to the audit log has a name in both languages of the panel (the audit
page and each history show `t("action." + action)`: a missing one showed the code to a Chinese
reader, e.g. "compliance.term_add"). The actions are read from the code, not listed by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.orders import OrderEvent
from models.reconciliation import RunStatus
from models.withdrawals import WithdrawalEvent
from server.admin import i18n

ROOT = Path(__file__).resolve().parents[2]
RECORD = re.compile(r"audit\.record\(([^)]*)", re.S)
LITERAL = re.compile(r'"([a-z_]+\.[a-z_.]+)"')
SESSION_ACTION = re.compile(r'\baction="([a-z_]+\.[a-z_.]+)"')  # end_user_sessions(..., action="user.logout")


def written_actions() -> set[str]:
    actions: set[str] = set()
    for package in ("models", "server", "scheduler", "miniprogram_api", "wechat"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for call in RECORD.findall(text):
                actions.update(LITERAL.findall(call))
            actions.update(SESSION_ACTION.findall(text))
    # The actions built from an enum's value (f"order.{event.value}" ...).
    actions.update(f"order.{e.value}" for e in OrderEvent)
    actions.update(f"withdrawal.{e.value}" for e in WithdrawalEvent)
    actions.update(f"reconciliation.{s.value}" for s in RunStatus)
    return actions


def test_the_code_writes_the_actions_this_test_reads():
    actions = written_actions()
    assert {"ledger.adjust", "compliance.term_add", "export.csv", "user.logout", "order.take"} <= actions


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_written_action_has_a_name(lang):
    table = i18n.ZH if lang == "zh" else i18n.EN
    missing = sorted(a for a in written_actions() if f"action.{a}" not in table)
    assert not missing, missing
