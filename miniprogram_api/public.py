"""The routes that need no session: the error catalog, and the images behind signed links.

`<image src>` in a Mini Program cannot send an Authorization header, so views carry short-lived
signed URLs (common.ImageLinks) instead of asking the app to download images itself; the signature
is the permission, and it was only put in views of things the reader may see.
"""

from __future__ import annotations


from sanic import Blueprint
from sanic.request import Request
from sanic.response import json, raw

from miniprogram_api import schemas as S
from miniprogram_api.common import image_link_valid
from miniprogram_api.docs import Query, doc
from miniprogram_api.error_catalog import catalog
from models import clock, uploads
from models.errors import DomainError, NotFound

bp = Blueprint("mp_public", url_prefix="/api/v1")
TAG = "public"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class ImageLinkInvalid(DomainError):
    code, status = "image_link_invalid", 403
    message, message_zh = "This image link is not valid.", "图片链接无效。"
    hint = "The link was altered or not made by this server: use the *_url of a fresh view."


class ImageLinkExpired(ImageLinkInvalid):
    code = "image_link_expired"
    message, message_zh = "This image link has expired.", "图片链接已过期。"
    hint = "Links live at least 30 minutes: reload the view for a fresh *_url."


@bp.get("/errors")
@doc(
    "Every error code, with its status and messages", tag=TAG, ok=S.ErrorCatalogOut, secured=False,
    description="""
    The error catalog, generated from the server's error classes (also committed as docs/errors.json).
    Each entry: `code` (stable: branch on it), HTTP `status`, `message` in zh-CN and en (templates over
    `details`; a `*_fen` detail is shown in yuan), what it means for the app, and the JSON Schema of `details`.
    """,
)
async def errors(request: Request):
    return json(_CATALOG or _load())


_CATALOG: dict = {}


def _load() -> dict:
    _CATALOG.update(catalog())
    return _CATALOG


@bp.get("/images/<ref:str>")
@doc(
    "An uploaded image behind a signed link (for <image src>)", tag=TAG, secured=False,
    query=(Query("exp", {"type": "integer", "minimum": 0, "maximum": 2**40}, "expiry (Unix seconds), from the link"),
           Query("sig", {"type": "string", "maxLength": 64}, "signature, from the link")),
    ok_content={t: {"schema": {"type": "string", "contentMediaType": t}} for t in IMAGE_TYPES},
    description="""
    Do not build these URLs: use the `*_url` fields of the views (`proof_image_url`, `appeal_evidence_url`,
    `attachment_url`, `avatar_url`, an upload's `url`). A link is valid at least 30 minutes
    (`image_link_ttl_s` in GET /config) and stays the same for a while, so the image cache works.
    No Authorization header is needed: the link itself is the permission. An altered link answers
    403 `image_link_invalid`, an old one 403 `image_link_expired` (reload the view).
    """,
)
async def image(request: Request, ref: str):
    try:
        exp = int(request.args.get("exp", ""))
    except ValueError:
        raise ImageLinkInvalid() from None
    sig = request.args.get("sig", "")
    if not uploads.REF_PATTERN.match(ref) or not image_link_valid(request.app.ctx.keys, ref, exp, sig):
        raise ImageLinkInvalid()
    left = exp - int(clock.now().timestamp())
    if left <= 0:
        raise ImageLinkExpired()
    record = await uploads.Upload.get_or_none(ref=ref)
    data = await request.app.ctx.storage.open_bytes(ref) if record is not None else None
    if data is None:
        raise NotFound("No such image.", zh="没有这张图片。")
    return raw(data, content_type=record.content_type,
               headers={"Cache-Control": f"private, max-age={left}", "X-Content-Type-Options": "nosniff"})
