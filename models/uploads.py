"""Uploaded images (proofs, appeal evidence, task attachments): what is stored, who owns it and who
may see it.

Only pixels are stored. An upload is decoded whole by Pillow and re-encoded (`sanitize_image`):
whatever else the file carried — an HTML page after the image's end (a polyglot), EXIF with the GPS
position of a worker's phone, comments, colour profiles — is not in the stored bytes. A file that is
not a whole PNG, JPEG, GIF or WebP image (a truncated one included) is refused, and so is one that
would decode to more than MAX_PIXELS pixels (a decompression bomb: a few kB that expand to
gigabytes), before it is decoded. JPEG stays JPEG and WebP stays WebP; PNG and GIF are stored as
PNG (a GIF's first frame). A JPEG's EXIF orientation is applied to the pixels before the EXIF is
dropped, so a phone photo still shows the right way up.

Each user may store at most `upload_quota_mb` (a market setting) of images in total, counted in
stored bytes; the check and the insert are serialised per user, so concurrent uploads cannot
overshoot it.

The bytes live behind a small storage interface (`server/storage.py`, local disk by default); this
table keeps the facts the rules need. An upload is referred to by its random `ref`, never by a
guessable number.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import secrets
import threading
import warnings
from dataclasses import dataclass

from tortoise import fields
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import clock, db
from models.errors import DomainError

REF_PATTERN = re.compile(r"^up_[A-Za-z0-9_-]{1,37}$")  # what record() makes; fits the column
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# 24 megapixels: a 6000×4000 photo (a larger one is over MAX_UPLOAD_BYTES as a JPEG anyway); 96 MB
# decoded as RGBA. With DECODE_CONCURRENCY this bounds what uploads can make a process allocate.
MAX_PIXELS = 24_000_000
DECODE_CONCURRENCY = 2
JPEG_QUALITY = 90
MB = 1024 * 1024

# Pillow decoder name → (stored format, content type).
_STORED_AS = {"PNG": ("PNG", "image/png"), "GIF": ("PNG", "image/png"), "JPEG": ("JPEG", "image/jpeg"), "WEBP": ("WEBP", "image/webp")}
_decoding = threading.BoundedSemaphore(DECODE_CONCURRENCY)


class UploadRejected(DomainError):
    code, status = "upload_rejected", 400
    message = "Only whole PNG, JPEG, GIF or WebP images up to 5 MB and 24 megapixels can be uploaded."
    message_zh = "只能上传 5 MB、2400 万像素以内的完整 PNG、JPEG、GIF 或 WebP 图片。"
    hint = "The file is not a whole image we accept (decoded in full, not judged by its name or first bytes)."
    details_schema = {"reason": {"type": "string", "description": "e.g. too_many_pixels"},
                      "max_megapixels": {"type": "integer"}}


class UploadTooLarge(DomainError):
    code, status = "upload_too_large", 413
    message, message_zh = "The image is larger than 5 MB.", "图片超过 5 MB。"
    hint = "Compress the image (wx.compressImage) and upload again."


class UploadQuotaExceeded(DomainError):
    code, status = "upload_quota_exceeded", 403
    message, message_zh = "Your image storage is full.", "你的图片存储空间已满。"
    hint = "The user's uploads reached the market setting upload_quota_mb (details: used_bytes, quota_bytes)."
    details_schema = {"used_bytes": {"type": "integer"}, "quota_bytes": {"type": "integer"}}


class Upload(Model):
    id = fields.BigIntField(primary_key=True)
    ref = fields.CharField(max_length=40, unique=True)
    owner = fields.ForeignKeyField("models.User", related_name="uploads", on_delete=fields.RESTRICT)
    content_type = fields.CharField(max_length=32)
    size_bytes = fields.IntField()  # of the stored (re-encoded) bytes: what the quota counts
    sha256 = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()

    class Meta:
        table = "uploads"


@dataclass(frozen=True)
class CleanImage:
    content_type: str
    data: bytes
    width: int
    height: int


def sanitize_image(data: bytes) -> CleanImage:
    """Decode `data` whole and re-encode its pixels only (blocking: CPU work, run it in a thread).
    UploadRejected for anything that is not a whole image of an accepted type, or too many pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with _decoding, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(_STORED_AS)) as img:
                if img.width * img.height > MAX_PIXELS:  # from the header: refuse before decoding
                    raise UploadRejected("The image has more than {max_megapixels} million pixels.",
                                         zh="图片超过 {max_megapixels} 百万像素。", reason="too_many_pixels",
                                         max_megapixels=MAX_PIXELS // 1_000_000)
                fmt = img.format
                img.load()  # decodes the (first) frame whole: a truncated or corrupt file fails here
                pixels = ImageOps.exif_transpose(img) if fmt in ("JPEG", "WEBP") else img
                return _encode(pixels, fmt)
        except UploadRejected:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            too_big = isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning))
            if too_big:
                raise UploadRejected("The image has more than {max_megapixels} million pixels.",
                                     zh="图片超过 {max_megapixels} 百万像素。", reason="too_many_pixels",
                                     max_megapixels=MAX_PIXELS // 1_000_000) from None
            raise UploadRejected() from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, MemoryError):
            # Pillow's decoders report broken files with any of these.
            raise UploadRejected() from None


def _encode(img, fmt: str) -> CleanImage:
    stored, content_type = _STORED_AS[fmt]
    if stored == "JPEG":
        pixels, options = img.convert("RGB") if img.mode != "RGB" else img, {"quality": JPEG_QUALITY}
    elif stored == "WEBP":
        pixels, options = img.convert("RGBA" if _has_alpha(img) else "RGB"), {"quality": JPEG_QUALITY}
    else:
        pixels, options = (img if img.mode in ("1", "L", "LA", "RGB", "RGBA") else img.convert("RGBA" if _has_alpha(img) else "RGB")), {}
    pixels.info = {}  # nothing from the file's metadata is written back (no exif, icc_profile, text)
    out = io.BytesIO()
    pixels.save(out, stored, **options)
    return CleanImage(content_type, out.getvalue(), pixels.width, pixels.height)


def _has_alpha(img) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info


async def accept(owner_id: int, data: bytes, storage) -> Upload:
    """Sanitise an uploaded image, record it within its owner's quota and store its bytes."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge()
    if not data:
        raise UploadRejected()
    clean = await asyncio.to_thread(sanitize_image, data)
    from models import settings as market_settings

    quota = (await market_settings.current()).upload_quota_mb * MB
    upload = await _record_within_quota(owner_id, clean, quota)
    try:
        await storage.save(upload.ref, clean.data)
    except BaseException:
        await Upload.filter(id=upload.id).delete()  # no row without its bytes (nor quota used for nothing)
        raise
    return upload


async def _record_within_quota(owner_id: int, clean: CleanImage, quota_bytes: int) -> Upload:
    async with in_transaction():
        if db.is_postgres():  # one upload of this user at a time: the sum below cannot go stale
            await db.fetch("SELECT id FROM users WHERE id = $1 FOR UPDATE", owner_id)
        row = await db.fetch_one("SELECT COALESCE(SUM(size_bytes), 0) AS used FROM uploads WHERE owner_id = $1", owner_id)
        used = int(row["used"])
        if used + len(clean.data) > quota_bytes:
            raise UploadQuotaExceeded(used_bytes=used, quota_bytes=quota_bytes)
        return await record(owner_id, clean.content_type, len(clean.data), hashlib.sha256(clean.data).hexdigest())


async def record(owner_id: int, content_type: str, size_bytes: int, sha256: str) -> Upload:
    return await Upload.create(
        ref=f"up_{secrets.token_urlsafe(18)}", owner_id=owner_id, content_type=content_type,
        size_bytes=size_bytes, sha256=sha256, created_at=clock.now(),
    )


async def owned_ref(ref: str | None, owner_id: int, field: str = "image") -> str | None:
    """Validate that an image reference in a request (its field named `field`) is an upload of this
    user (or None)."""
    from models.errors import InvalidInput

    if ref is None:
        return None
    if not REF_PATTERN.match(ref) or not await Upload.exists(ref=ref, owner_id=owner_id):
        raise InvalidInput("The image must be one of your uploads.", zh="图片必须是你自己上传的。", field=field)
    return ref


async def may_view(ref: str, user) -> bool:
    """The owner; the publisher of an order whose proof/evidence it is; and, for a task's image
    attachment, every worker (it is what they must scan or follow) and the task's publisher."""
    from models.orders import Order
    from models.tasks import Task
    from tortoise.expressions import Q

    if not REF_PATTERN.match(ref):
        return False
    upload = await Upload.get_or_none(ref=ref)
    if upload is None:
        return False
    if upload.owner_id == user.id:
        return True
    if await Order.filter(Q(proof_image=ref) | Q(appeal_evidence=ref)).filter(Q(publisher_id=user.id) | Q(worker_id=user.id)).exists():
        return True
    if user.end == "worker" and await Task.exists(attachment_kind="image", attachment=ref):
        return True
    return False
