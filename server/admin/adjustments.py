"""Manual adjustments from the panel (issue 13 defect 1): "Back + submit credited ¥5.00 twice".

Two guards, because they catch different mistakes:
- The form's `request_id` is issued with the page and kept when the page comes back with an error,
  so a double click or a re-submitted error page moves money once (ledger.adjust is idempotent on it).
- The browser's Back re-fetches the page (operator pages are `no-store`) and so gets a new id: a
  second adjustment of the same amount to the same customer within REPEAT_WINDOW_S is therefore
  held until the operator confirms it is meant (`confirm_repeat=1`).
"""

from __future__ import annotations

import datetime as dt

from models import clock
from models.audit import AuditLog
from models.ledger import JournalEntry

REPEAT_WINDOW_S = 10 * 60


async def already_done(request_id: str) -> bool:
    """This form was submitted before (a double click): ledger.adjust returns the first result."""
    return await JournalEntry.exists(key=f"adjustment:admin:{request_id}")


async def recent_identical(user_id: int, amount_fen: int, within_s: int = REPEAT_WINDOW_S) -> AuditLog | None:
    """The latest adjustment of exactly this amount to this customer in the last `within_s`."""
    since = clock.now() - dt.timedelta(seconds=within_s)
    rows = await AuditLog.filter(action="ledger.adjust", target_kind="user", target_id=user_id, created_at__gte=since).order_by("-id").limit(50)
    for row in rows:
        if (row.data or {}).get("amount_fen") == amount_fen:
            return row
    return None
