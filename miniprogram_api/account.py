"""What both Mini Programs share, each under its own prefix (`/api/v1/worker/...`,
`/api/v1/publisher/...`): login, my profile, wallet, ledger, withdrawals, invitations, uploads.

The routes are built once per end, so a token of one end can never be used on the other's paths
(403 wrong_end) and the OpenAPI document lists each end's endpoints separately.
"""

from __future__ import annotations

import functools
import hashlib

from sanic import Blueprint
from sanic.request import Request
from sanic.response import json, raw

from miniprogram_api import views as V
from miniprogram_api.auth import Session, issue_token, require
from miniprogram_api.common import iso, page, page_args, parse, poke_relay, user_view, withdrawal_view
from miniprogram_api.docs import doc
from miniprogram_api.schemas import LoginIn, MoneyRequestIn
from models import db, ledger, referrals, uploads, withdrawals
from models.errors import DomainError, InvalidInput, NotFound, UserBanned
from models.users import End
from models.withdrawals import Withdrawal
from server.ratelimit import limit


class UploadRejected(DomainError):
    code, status, message = "upload_rejected", 400, "Only PNG, JPEG, GIF or WebP images up to 5 MB can be uploaded."


class UploadTooLarge(DomainError):
    code, status, message = "upload_too_large", 413, "The image is larger than 5 MB."


@functools.cache
def account_blueprint(end: End) -> Blueprint:
    """Built once per process (documenting routes is slow) and shared by every app."""
    bp = Blueprint(f"mp_account_{end.value}", url_prefix=f"/api/v1/{end.value}")
    tag = end.value

    @bp.post("/login")
    @doc(
        f"Log in to the {end.value} Mini Program with a wx.login() code", tag=tag, body=LoginIn, ok=V.LOGIN,
        errors=(400, 403, 429, 503), secured=False,
        description="Creates the account at first login and binds the inviter (invite_code or the scene of a "
        "shared Mini Program code) once. Returns a session token for every other call and the WebSocket. "
        "invalid_login_code (400): get a fresh code from wx.login() and retry.",
    )
    async def login(request: Request):
        body = parse(LoginIn, request)
        await limit(request, "login", request.ip or "unknown")
        user, created = await request.app.ctx.wechat.login(
            end.value, body.code, invite_code=body.invite_code or body.scene, nickname=body.nickname or ""
        )
        if user.banned:
            raise UserBanned()
        token, exp = issue_token(request.app.ctx.secret_key, user)
        from datetime import datetime, timezone

        return json({"token": token, "expires_at": iso(datetime.fromtimestamp(exp, timezone.utc)), "created": created, "user": user_view(user)})

    @bp.get("/me")
    @doc("My account", tag=tag, ok=V.USER, errors=(401, 403))
    @require(end)
    async def me(request: Request, session: Session):
        return json(user_view(session.user))

    @bp.get("/wallet")
    @doc("My balances and totals (fen)", tag=tag, ok=V.WALLET, errors=(401, 403))
    @require(end)
    async def wallet(request: Request, session: Session):
        uid = session.user.id
        await referrals.settle(inviter_id=uid)  # rewards earned so far show at once
        balances = await ledger.user_balances(uid)
        totals = await db.fetch_one(
            "SELECT "
            "COALESCE(SUM(CASE WHEN e.kind = 'order_complete' AND p.amount_fen > 0 THEN p.amount_fen ELSE 0 END), 0) AS earned, "
            "COALESCE(SUM(CASE WHEN e.kind = 'recharge' THEN p.amount_fen ELSE 0 END), 0) AS recharged, "
            "COALESCE(SUM(CASE WHEN e.kind = 'publish' THEN -p.amount_fen ELSE 0 END), 0) AS held "
            "FROM postings p JOIN accounts a ON a.id = p.account_id JOIN journal_entries e ON e.id = p.entry_id "
            "WHERE a.user_id = $1 AND a.kind = 'available'",
            uid,
        )
        referral = await db.fetch_one("SELECT COALESCE(SUM(amount_fen), 0) AS s FROM referral_rewards WHERE inviter_id = $1", uid)
        return json({
            "available_fen": balances["available"],
            "withdrawing_fen": balances["withdrawing"],
            "total_earned_fen": int(totals["earned"]),
            "referral_earned_fen": int(referral["s"]),
            "total_recharged_fen": int(totals["recharged"]),
            "total_spent_fen": int(totals["held"]),
        })

    @bp.get("/ledger")
    @doc(
        "My account details: every posting with the balance after it, newest first", tag=tag, ok=V.PAGE_POSTINGS,
        errors=(400, 401, 403), params=(("cursor", "integer", "id of the last posting of the previous page"), ("limit", "integer", "1–50")),
    )
    @require(end)
    async def my_ledger(request: Request, session: Session):
        cursor, n = page_args(request)
        rows = await db.fetch(
            "SELECT p.id, p.created_at, a.kind AS account, e.kind, p.amount_fen, p.balance_after_fen, e.task_id, e.order_id, e.memo "
            "FROM postings p JOIN accounts a ON a.id = p.account_id JOIN journal_entries e ON e.id = p.entry_id "
            "WHERE a.user_id = $1 AND p.id < $2 ORDER BY p.id DESC LIMIT $3",
            session.user.id, cursor or 2**62, n,
        )
        items = [
            {
                "id": r["id"], "at": iso(_dt(r["created_at"])), "account": r["account"], "kind": r["kind"],
                "amount_fen": r["amount_fen"], "balance_after_fen": r["balance_after_fen"],
                "task_id": r["task_id"], "order_id": r["order_id"], "memo": r["memo"],
            }
            for r in rows
        ]
        return json(page(items, n))

    @bp.post("/withdrawals")
    @doc(
        "Request a withdrawal: the amount moves to 'withdrawing' until an operator decides", tag=tag, body=MoneyRequestIn,
        ok=V.WITHDRAWAL, ok_status=201,
        description="Errors: withdrawal_out_of_range, daily_withdrawal_cap, insufficient_balance, idempotency_conflict. "
        "The fee is taken when the payout succeeds. A repeated request_id returns the first withdrawal.",
    )
    @require(end)
    async def request_withdrawal(request: Request, session: Session):
        body = parse(MoneyRequestIn, request)
        await limit(request, "write", str(session.user.id))
        w = await withdrawals.request(session.user.id, body.amount_fen, request_id=body.request_id)
        poke_relay(request)
        return json(_withdrawal(request, session, w), status=201)

    @bp.get("/withdrawals")
    @doc("My withdrawals, newest first", tag=tag, ok=V.PAGE_WITHDRAWALS, errors=(400, 401, 403),
         params=(("cursor", "integer", "id of the last withdrawal of the previous page"), ("limit", "integer", "1–50")))
    @require(end)
    async def my_withdrawals(request: Request, session: Session):
        cursor, n = page_args(request)
        q = Withdrawal.filter(user_id=session.user.id)
        if cursor:
            q = q.filter(id__lt=cursor)
        return json(page([_withdrawal(request, session, w) for w in await q.order_by("-id").limit(n)], n))

    @bp.get("/withdrawals/<withdrawal_id:int>")
    @doc("One of my withdrawals ('transfer' holds the wx.requestMerchantTransfer arguments while WeChat waits for my confirmation)", tag=tag, ok=V.WITHDRAWAL, errors=(401, 403, 404))
    @require(end)
    async def withdrawal_detail(request: Request, session: Session, withdrawal_id: int):
        return json(_withdrawal(request, session, await withdrawals.get_withdrawal(withdrawal_id, user_id=session.user.id)))

    @bp.get("/invitations")
    @doc("My invite code, share scene, invitees and what each earned me", tag=tag, ok=V.INVITATIONS, errors=(401, 403))
    @require(end)
    async def invitations(request: Request, session: Session):
        u = session.user
        rows = await db.fetch(
            "SELECT u.id, u.nickname, u.created_at, COALESCE(SUM(r.amount_fen), 0) AS earned FROM users u "
            "LEFT JOIN referral_rewards r ON r.invitee_id = u.id AND r.inviter_id = $1 "
            "WHERE u.inviter_id = $1 GROUP BY u.id, u.nickname, u.created_at ORDER BY u.id DESC LIMIT 500",
            u.id,
        )
        invitees = [{"id": r["id"], "nickname": r["nickname"], "joined_at": iso(_dt(r["created_at"])), "earned_fen": int(r["earned"])} for r in rows]
        return json({
            "invite_code": u.invite_code,
            "scene": u.invite_code,
            "share_path": f"pages/index/index?scene={u.invite_code}",
            "referral_earned_fen": sum(i["earned_fen"] for i in invitees),
            "invitees": invitees,
        })

    @bp.post("/uploads")
    @doc(
        "Upload an image (multipart field 'file'): proof, appeal evidence or task attachment", tag=tag, ok=V.UPLOAD,
        ok_status=201, errors=(400, 401, 403, 413, 429),
        body_content={"multipart/form-data": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}},
        description="PNG, JPEG, GIF or WebP, checked by content, at most 5 MB. Returns a ref to put in proof_image, "
        "evidence or attachment.",
    )
    @require(end)
    async def upload(request: Request, session: Session):
        await limit(request, "upload", str(session.user.id))
        files = request.files.get("file") if request.files else None
        if not files:
            raise InvalidInput("Send the image as multipart/form-data field 'file'.", field="file")
        data = files.body
        if len(data) > uploads.MAX_UPLOAD_BYTES:
            raise UploadTooLarge()
        content_type = uploads.sniff_image_type(data[:16])
        if content_type is None:
            raise UploadRejected()
        record = await uploads.record(session.user.id, content_type, len(data), hashlib.sha256(data).hexdigest())
        await request.app.ctx.storage.save(record.ref, data)
        return json({"ref": record.ref, "content_type": content_type, "size_bytes": len(data)}, status=201)

    @bp.get("/uploads/<ref:str>")
    @doc(
        "An uploaded image, if I may see it", tag=tag, errors=(401, 403, 404),
        ok_content={t: {"type": "string", "format": "binary"} for t in ("image/png", "image/jpeg", "image/gif", "image/webp")},
    )
    @require(end)
    async def download(request: Request, session: Session, ref: str):
        if not await uploads.may_view(ref, session.user):
            raise NotFound("No such image.")
        record = await uploads.Upload.get(ref=ref)
        data = await request.app.ctx.storage.open_bytes(ref)
        if data is None:
            raise NotFound("No such image.")
        return raw(data, content_type=record.content_type, headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

    return bp


def _withdrawal(request: Request, session: Session, w) -> dict:
    """The withdrawal view plus, while WeChat waits for the user's confirmation, the arguments of
    wx.requestMerchantTransfer."""
    view = withdrawal_view(w)
    view["transfer"] = None
    if w.package_info and w.status.value == "paying":
        cfg = request.app.ctx.wechat_config
        view["transfer"] = {
            "mchId": cfg.pay.mchid, "appId": cfg.app(session.end.value).appid,
            "package": w.package_info, "openId": session.user.openid,
        }
    return view


def _dt(value):
    import datetime as dt

    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
