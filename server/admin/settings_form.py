"""The settings page (SPEC §6, issue 13 defects 2 and 3): every market setting in the unit a person
thinks in, stored exactly.

- Money in yuan (fen stored), ratios in percent (basis points stored), counts as they are.
- Timers as two boxes, minutes and seconds (`take_window_s_min`, `take_window_s_sec`): 8 s shows as
  0 min 8 s, 601 s as 10 min 1 s, and saving a ratio never touches a timer (issue 13: "8 s shows as
  0.1333 分钟" and then fails with "必须是整数秒" on timers nobody touched).
- Only what differs from the values the page was rendered with is saved; the `version` hidden field
  proves the page was rendered from the row in force. When somebody else saved meanwhile, nothing is
  saved and the page comes back with the latest values, each field this operator typed differently
  marked with what they typed, so saving again never silently reverts the other change.
"""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse

from models import settings as market_settings
from models.errors import DomainError, InvalidSettings
from models.operators import Operator
from server.admin import i18n, units

# Every market setting as people see it: (field, unit, label). Units: yuan ↔ fen, percent ↔ bp,
# duration (minutes + seconds) ↔ seconds, count as is. The order is the order of the form.
SETTINGS_FORM = (
    ("min_unit_price_fen", "yuan", "Minimum unit price"),
    ("max_unit_price_fen", "yuan", "Maximum unit price"),
    ("max_quantity", "count", "Maximum slots per task"),
    ("publish_fee_bp", "percent", "Publishing fee"),
    ("worker_invite_bp", "percent", "Worker inviter reward (of the unit price)"),
    ("publisher_invite_bp", "percent", "Publisher inviter reward (of the fee)"),
    ("withdraw_fee_bp", "percent", "Withdrawal fee"),
    ("min_withdraw_fen", "yuan", "Minimum withdrawal"),
    ("daily_withdraw_cap_fen", "yuan", "Daily withdrawal cap per user"),
    ("max_orders_in_progress", "count", "Orders in progress per worker"),
    ("take_window_s", "duration", "Take window"),
    ("countdown_s", "duration", "Task countdown (at most 10 minutes)"),
    ("review_window_s", "duration", "Review window"),
    ("appeal_window_s", "duration", "Appeal window"),
    ("upload_quota_mb", "count", "Image storage per user (MB)"),
    ("record_window_days", "count", "Records: window (days)"),
    ("record_min_sample", "count", "Records: minimum reviewed orders before rates are shown"),
    ("limit_window_days", "count", "Worker limits: window (days)"),
    ("limit_max_abandons", "count", "Worker limits: abandons that pause taking (0 = off)"),
    ("limit_max_appeals_lost", "count", "Worker limits: lost appeals that pause taking (0 = off)"),
    ("compliance_hold_on_match", "count", "Compliance: a prohibited term holds the task for an operator (1) or refuses the publish (0)"),
    ("referral_requires_first_order", "count", "Referral rewards only from an invitee's second completed order (1 = on, 0 = off)"),
)
LABELS = {name: label for name, _, label in SETTINGS_FORM}
UNITS = {name: unit for name, unit, _ in SETTINGS_FORM}
UNIT_LABEL = {"yuan": "¥", "percent": "%", "duration": "", "count": ""}
_PARSE = {"yuan": units.parse_yuan, "percent": units.parse_percent, "count": units.parse_count}
_SHOW = {"yuan": units.yuan_plain, "percent": units.percent_plain, "count": str}


def inputs_of(name: str) -> tuple[str, ...]:
    """The form inputs of one setting: a timer has two."""
    return (f"{name}_min", f"{name}_sec") if UNITS[name] == "duration" else (name,)


def shown(values) -> dict[str, str]:
    """{input name: text} for the settings in force (a MarketSettings)."""
    out: dict[str, str] = {}
    for name, unit, _ in SETTINGS_FORM:
        value = getattr(values, name)
        if unit == "duration":
            m, s = divmod(int(value), 60)
            out[f"{name}_min"], out[f"{name}_sec"] = str(m), str(s)
        else:
            out[name] = _SHOW[unit](value)
    return out


def parse_duration(minutes: str, seconds: str) -> int:
    """Minutes and seconds as typed → seconds. An empty seconds box is 0; seconds are 0–59."""
    m = units.parse_count(minutes)
    s = units.parse_count(seconds) if (seconds or "").strip() else 0
    if s > 59:
        raise units.FieldError("Seconds must be 0–59.")
    return m * 60 + s


def parse(form: dict[str, str]) -> tuple[dict[str, int], dict[str, str]]:
    """The submitted inputs → ({setting: stored value}, {setting: FieldError})."""
    values: dict[str, int] = {}
    errors: dict[str, units.FieldError] = {}
    for name, unit, _ in SETTINGS_FORM:
        try:
            if unit == "duration":
                values[name] = parse_duration(form.get(f"{name}_min", ""), form.get(f"{name}_sec", ""))
            else:
                values[name] = _PARSE[unit](form.get(name, ""))
        except units.FieldError as exc:
            errors[name] = exc
    return values, errors


def describe(lang: str, name: str, value: int) -> str:
    """One stored setting as a person reads it: "¥1.00", "10 %", "8 秒", "30 分钟", "10 分 1 秒"."""
    t = i18n.translator(lang)
    unit = UNITS.get(name)
    if unit == "yuan":
        return units.yuan(value)
    if unit == "percent":
        return units.percent_plain(value) + " %"
    if unit == "duration":
        m, s = divmod(int(value), 60)
        h, m = divmod(m, 60)
        if h and not m and not s:
            return t("{n} hours", n=h)
        if h:
            m += h * 60
        if m and s:
            return t("{m} min {s} s", m=m, s=s)
        if m:
            return t("{n} minutes", n=m)
        return t("{n} s", n=s)
    return str(value)


async def settings_page(request: Request, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                        differs: dict[str, str] | None = None, status: int = 200) -> HTTPResponse:
    """The form. `typed`: the inputs to show instead of the values in force (bad input kept);
    `differs`: {setting: what this operator typed} for the fields that lost to a newer change."""
    from server.admin.views import show

    market_settings.invalidate_cache()
    current = await market_settings.current()
    row = await market_settings.SettingsRow.get(id=1)
    texts = shown(current)
    if typed:
        texts.update(typed)
    return await show(
        request, "settings.html", status=status, fields=SETTINGS_FORM, shown=texts, errors=errors or {},
        differs=differs or {}, unit_label=UNIT_LABEL, version=row.version, updated_at=row.updated_at,
        stored={name: getattr(current, name) for name, _, _ in SETTINGS_FORM},
    )


async def submit(request: Request, op: Operator) -> HTTPResponse:
    from server.admin.views import back, field_errors, form_value, lang_of

    lang = lang_of(request)
    t = i18n.translator(lang)
    market_settings.invalidate_cache()
    current = await market_settings.current()
    form = {field: form_value(request, field, 40) for name, _, _ in SETTINGS_FORM for field in inputs_of(name)}
    values, bad = parse(form)
    errors = {name: t(exc.message, **exc.params) for name, exc in bad.items()}
    row = await market_settings.SettingsRow.get(id=1)
    if form_value(request, "version") != str(row.version):
        return await _conflict(request, lang, current, values, bad, form)
    if errors:
        return await settings_page(request, typed=form, errors=errors, status=400)
    changes = {name: v for name, v in values.items() if v != getattr(current, name)}
    if not changes:
        return back("/admin/settings", "nothing_changed")
    try:
        await market_settings.update(changes, operator_id=op.id, expected_version=row.version)
    except InvalidSettings as exc:
        return await settings_page(request, typed=form, errors=field_errors(lang, exc), status=400)
    except DomainError:  # Conflict: changed by someone else between our read and write
        market_settings.invalidate_cache()
        return await _conflict(request, lang, await market_settings.current(), values, bad, form)
    return back("/admin/settings", "settings_saved")


async def _conflict(request: Request, lang: str, before, values: dict[str, int], bad: dict, form: dict[str, str]) -> HTTPResponse:
    """Somebody else saved first: the latest values in the form, and beside each field this
    operator typed differently, what they typed (nothing of theirs is saved)."""
    t = i18n.translator(lang)
    market_settings.invalidate_cache()
    latest = await market_settings.current()
    differs: dict[str, str] = {}
    for name, _, _ in SETTINGS_FORM:
        if name in bad:
            differs[name] = " ".join(form.get(f, "") for f in inputs_of(name)).strip()
        elif values[name] != getattr(latest, name):
            differs[name] = describe(lang, name, values[name])
    message = t("Someone else changed the settings meanwhile. The form now shows their values; the fields marked differ from what you typed. Check and save again.")
    return await settings_page(request, errors={"_": message}, differs=differs, status=409)
