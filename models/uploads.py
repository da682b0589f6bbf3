"""Uploaded images (proofs, appeal evidence, task attachments): who owns them and who may see them.

The bytes live behind a small storage interface (`server/storage.py`, local disk by default); this
table keeps the facts the rules need. An upload is referred to by its random `ref`, never by a
guessable number.
"""

from __future__ import annotations

import re
import secrets

from tortoise import fields
from tortoise.models import Model

from models import clock

REF_PATTERN = re.compile(r"^up_[A-Za-z0-9_-]{1,37}$")  # what record() makes; fits the column
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class Upload(Model):
    id = fields.BigIntField(primary_key=True)
    ref = fields.CharField(max_length=40, unique=True)
    owner = fields.ForeignKeyField("models.User", related_name="uploads", on_delete=fields.RESTRICT)
    content_type = fields.CharField(max_length=32)
    size_bytes = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()

    class Meta:
        table = "uploads"


def sniff_image_type(head: bytes) -> str | None:
    """The image type from the file's first bytes (its content), never from its name."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


async def record(owner_id: int, content_type: str, size_bytes: int, sha256: str) -> Upload:
    return await Upload.create(
        ref=f"up_{secrets.token_urlsafe(18)}", owner_id=owner_id, content_type=content_type,
        size_bytes=size_bytes, sha256=sha256, created_at=clock.now(),
    )


async def owned_ref(ref: str | None, owner_id: int) -> str | None:
    """Validate that an image reference in a request is an upload of this user (or None)."""
    from models.errors import InvalidInput

    if ref is None:
        return None
    if not REF_PATTERN.match(ref) or not await Upload.exists(ref=ref, owner_id=owner_id):
        raise InvalidInput("The image must be one of your uploads.", field="image")
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
