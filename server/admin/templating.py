"""The panel's Jinja2 environment (rendered through sanic-ext's `render`): its own template folder,
autoescaping on, and the filters that turn stored units into what people read."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from server.admin import units

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    enable_async=True,  # sanic-ext renders with render_async (TEMPLATING_ENABLE_ASYNC defaults to on)
    undefined=StrictUndefined,  # a typo in a template fails its route test instead of showing nothing
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["yuan"] = units.yuan
ENV.filters["local"] = units.local
ENV.filters["percent"] = lambda bp: units.percent_plain(bp) + " %"
ENV.filters["minutes"] = units.minutes_plain
ENV.filters["val"] = lambda v: getattr(v, "value", v)


def detail(value, key: str, t) -> str:
    """One value of a reconciliation difference's details as people read it: times in Beijing
    time, the known words in the page's language, WeChat's numbers as they are."""
    if value is None:
        return "—"
    if key.endswith("_at") and isinstance(value, str):
        try:
            return units.local(value)
        except ValueError:
            return value
    if key == "what":
        return t(f"what.{value}")
    if key == "our_status":
        return t(str(value))
    return str(value)


ENV.filters["detail"] = detail
