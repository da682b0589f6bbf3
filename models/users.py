"""Users: one account per end (worker / publisher) per WeChat openid, with the invitation binding.

WeChat gives a different openid per AppID, so the same person holds two unrelated accounts, each with
its own balances and invitation tree (SPEC §1). `unionid`, when WeChat provides it, lets us tell
that a worker and a publisher are the same person (a worker may not take their own task).
"""

from __future__ import annotations

import secrets
from enum import StrEnum

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock
from models.errors import InvalidInviteCode, UserNotFound
from models.inputs import check_text


class End(StrEnum):
    WORKER = "worker"  # takes tasks in the Worker Mini Program
    PUBLISHER = "publisher"  # pays to publish tasks in the Publisher Mini Program


# Crockford-style alphabet: no 0/O, 1/I/L confusion when a code is read aloud or typed.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
INVITE_CODE_LEN = 8


class User(Model):
    id = fields.BigIntField(primary_key=True)
    end = fields.CharEnumField(End, max_length=16)
    openid = fields.CharField(max_length=64)
    unionid = fields.CharField(max_length=64, null=True)
    nickname = fields.CharField(max_length=64, default="")
    avatar = fields.CharField(max_length=40, null=True)  # an upload ref (PUT /me/avatar); migration 0007
    invite_code = fields.CharField(max_length=16, unique=True)
    inviter = fields.ForeignKeyField(
        "models.User", related_name="invitees", null=True, on_delete=fields.RESTRICT
    )
    banned = fields.BooleanField(default=False)
    banned_reason = fields.CharField(max_length=255, null=True)
    # Bumped on ban and logout (models/sessions.py): every token carries the version it was issued under.
    token_version = fields.IntField(default=0)
    # Counter kept by take/submit/abandon/timers, so the "at most N in progress" limit holds
    # under concurrent takes through one conditional UPDATE (never count-then-insert).
    orders_in_progress = fields.IntField(default=0)
    # The daily withdrawal cap, kept the same way: the day and what was requested on it.
    withdraw_day = fields.DateField(null=True)
    withdrawn_today_fen = fields.BigIntField(default=0)
    created_at = fields.DatetimeField()

    class Meta:
        table = "users"
        unique_together = (("end", "openid"),)
        constraints = (  # added by migration 0002 (see models/ledger.py Account.Meta)
            CheckConstraint(check="orders_in_progress >= 0 AND withdrawn_today_fen >= 0", name="ck_users_counters"),
        )

    def __str__(self) -> str:
        return f"{self.end}:{self.id}"


def new_invite_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(INVITE_CODE_LEN))


async def get_user(user_id: int) -> User:
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise UserNotFound()
    return user


async def login_or_register(
    end: End,
    openid: str,
    *,
    unionid: str | None = None,
    invite_code: str | None = None,
    nickname: str = "",
) -> tuple[User, bool]:
    """The account for (end, openid), created at first login with its inviter bound once.

    Returns (user, created). An invite code is only considered at creation: the binding never
    changes later, never points at the user themself (impossible: the code must already exist),
    and never forms a cycle (the inviter already existed before the invitee, so edges always point
    to older accounts). An unknown or other-end code at first login is ignored rather than
    refusing the login: the person should still get in.
    """
    from models.ledger import open_user_accounts

    for name, value in (("openid", openid), ("unionid", unionid), ("invite_code", invite_code), ("nickname", nickname)):
        if value:
            check_text(value, name)
    existing = await User.get_or_none(end=end, openid=openid)
    if existing is not None:
        if unionid and existing.unionid != unionid:
            await User.filter(id=existing.id).update(unionid=unionid)
            existing.unionid = unionid
        return existing, False

    inviter = None
    if invite_code:
        inviter = await User.get_or_none(invite_code=invite_code.strip().upper(), end=end)
    for _ in range(5):  # invite codes are random; retry the rare collision
        try:
            async with in_transaction():
                user = await User.create(
                    end=end,
                    openid=openid,
                    unionid=unionid,
                    nickname=nickname[:64],
                    invite_code=new_invite_code(),
                    inviter=inviter,
                    created_at=clock.now(),
                )
                await open_user_accounts(user.id)
                await audit.record(
                    "user", user.id, "user.register", "user", user.id,
                    data={"end": end.value, "inviter_id": inviter.id if inviter else None},
                )
            return user, True
        except IntegrityError:
            again = await User.get_or_none(end=end, openid=openid)
            if again is not None:  # a concurrent first login won; use its account
                return again, False
    raise InvalidInviteCode("Could not allocate an invite code; try again.", zh="无法分配邀请码，请重试。")


async def set_banned(user_id: int, banned: bool, *, operator_id: int, reason: str = "") -> User:
    """Ban (every session of the user ends at once: access and refresh tokens) or unban (sessions
    from before the ban stay ended)."""
    from models.sessions import end_user_sessions

    reason = check_text(reason or "", "reason", multiline=True)
    async with in_transaction():
        values = {"banned": banned, "banned_reason": reason[:255] if banned else None}
        n = await User.filter(id=user_id).update(**values)
        if n != 1:
            raise UserNotFound()
        if banned:
            await end_user_sessions(user_id, actor=("operator", operator_id), action="")
        await audit.record(
            "operator", operator_id, "user.ban" if banned else "user.unban", "user", user_id,
            reason=reason,
        )
    return await get_user(user_id)


async def set_nickname(user_id: int, nickname: str) -> User:
    """The nickname the user typed (WeChat gives apps none any more)."""
    from models.inputs import clean_text

    nickname = clean_text(nickname, "nickname", 64, required=True)
    if await User.filter(id=user_id).update(nickname=nickname) != 1:
        raise UserNotFound()
    return await get_user(user_id)


async def set_avatar(user_id: int, ref: str) -> User:
    """The profile picture: an upload ref of this user's (the caller checked it is theirs)."""
    if await User.filter(id=user_id).update(avatar=ref) != 1:
        raise UserNotFound()
    return await get_user(user_id)
