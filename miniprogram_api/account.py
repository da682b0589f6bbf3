"""What both Mini Programs share, each under its own prefix (`/api/v1/worker/...`,
`/api/v1/publisher/...`): login, refresh, logout, my profile (nickname, avatar), the market's
settings, wallet, ledger, withdrawals, invitations (with the Mini Program code), uploads.

The routes are built once per end, so a token of one end can never be used on the other's paths
(403 wrong_end) and the OpenAPI document lists each end's endpoints separately.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone

from sanic import Blueprint
from sanic.request import Request
from sanic.response import empty, json, raw

from miniprogram_api import schemas as S
from miniprogram_api.auth import Session, issue_token, require
from miniprogram_api.common import (LINK_TTL_S, created, image_links, iso, now_iso, page, page_args, parse, poke_relay,
                                    user_view, withdrawal_view)
from miniprogram_api.docs import PAGE_QUERY, doc
from models import db, ledger, orders, referrals, sessions, uploads, withdrawals
from models import settings as market_settings
from models.errors import DomainError, InsufficientBalance, InvalidInput, NotFound, UserBanned, UserNotFound
from models.users import End
from models.withdrawals import Withdrawal
from server.ratelimit import client_address, limit

INVITE_PAGE = "pages/index/index"  # the page a shared invitation (link or Mini Program code) opens
INVITEES_LISTED = 500  # GET /invitations lists the newest this many; its totals cover everyone


@functools.cache
def account_blueprint(end: End) -> Blueprint:
    """Built once per process and shared by every app."""
    bp = Blueprint(f"mp_account_{end.value}", url_prefix=f"/api/v1/{end.value}")
    tag = end.value

    @bp.post("/login")
    @doc(
        f"Log in to the {end.value} Mini Program with a wx.login() code", tag=tag, body=S.LoginIn, ok=S.LoginOut,
        secured=False,
        description="""
        Creates the account at the first login (`created: true`) and binds the inviter once: pass the
        inviter's `invite_code`, or the `scene` of a scanned Mini Program code (it carries the invite
        code); later logins ignore both. Returns an access token (`token`, 15 minutes) for every other
        call and the WebSocket (`Authorization: Bearer <token>`), and a single-use refresh token that
        gets new ones from `POST /refresh` (docs/api.md, "Login and the tokens"). `invalid_login_code`:
        get a fresh code from wx.login() and retry. `wechat_unavailable`: retry later. Rate limited per
        client address.
        """,
    )
    async def login(request: Request):
        body = parse(S.LoginIn, request)
        await limit(request, "login", client_address(request))
        user, was_created = await request.app.ctx.wechat.login(
            end.value, body.code, invite_code=body.invite_code or body.scene, nickname=body.nickname or ""
        )
        if user.banned:
            raise UserBanned()
        row, refresh_token = await sessions.open_user_session(user)
        return json(_tokens(request, user, row, refresh_token) | {"created": was_created})

    @bp.post("/refresh")
    @doc(
        "Trade the refresh token for a new access token and a new refresh token", tag=tag, body=S.RefreshIn,
        ok=S.TokensOut, secured=False,
        description="""
        Call it when the access token has expired (401 `token_expired`) or is about to. The refresh
        token is single-use: store the new one. `refresh_token_invalid`: the session has ended
        (logout, ban, 30 days unused, 90 days old, or the token was already used; a token used twice
        ends every session of the account) — log in again with wx.login(). `user_banned`: the
        account is banned. Rate limited per session.
        """,
    )
    async def refresh(request: Request):
        body = parse(S.RefreshIn, request)
        await limit(request, "refresh", body.refresh_token.partition(".")[0][:20])
        user, row, refresh_token = await sessions.refresh_user_session(body.refresh_token, end.value)
        return json(_tokens(request, user, row, refresh_token))

    @bp.post("/logout")
    @doc(
        "Log out: every session of this account on this Mini Program ends", tag=tag, ok_status=204, ok_content={},
        description="""
        Every access token and refresh token of the account stops working at once, on every phone
        (the account is the WeChat user's: a later wx.login() logs in again). An open WebSocket gets
        an `error` with code `session_ended` and is closed. Answers 204 with no body.
        """,
    )
    @require(end)
    async def logout(request: Request, session: Session):
        await limit(request, "write", str(session.user.id))
        await sessions.end_user_sessions(session.user.id, actor=("user", session.user.id), action="user.logout")
        return empty(status=204)

    @bp.get("/me")
    @doc("My account", tag=tag, ok=S.UserOut, description="My profile, invite code and inviter.")
    @require(end)
    async def me(request: Request, session: Session):
        return json(user_view(session.user, image_links(request)))

    @bp.patch("/me")
    @doc(
        "Set my nickname", tag=tag, body=S.ProfileIn, ok=S.UserOut, unreachable=(UserNotFound,),  # require() found me
        description="""
        WeChat no longer gives apps the user's nickname: the app asks with `<input type="nickname">`
        and sends it here (1–64 characters; surrounding spaces are dropped).
        """,
    )
    @require(end)
    async def set_profile(request: Request, session: Session):
        body = parse(S.ProfileIn, request)
        await limit(request, "write", str(session.user.id))
        from models.users import set_nickname

        return json(user_view(await set_nickname(session.user.id, body.nickname), image_links(request)))

    @bp.put("/me/avatar")
    @doc(
        "Set my profile picture", tag=tag, body=S.AvatarIn, ok=S.UserOut, unreachable=(UserNotFound,),  # require() found me
        description="""
        The avatar is an upload of mine, stored like every other image: get the picture with
        `<button open-type="chooseAvatar">`, upload it (POST /uploads), then send its `ref` here.
        Views then carry `avatar_url`.
        """,
    )
    @require(end)
    async def set_avatar(request: Request, session: Session):
        body = parse(S.AvatarIn, request)
        await limit(request, "write", str(session.user.id))
        from models.users import set_avatar as store_avatar

        ref = await uploads.owned_ref(body.ref, session.user.id)
        return json(user_view(await store_avatar(session.user.id, ref), image_links(request)))

    @bp.get("/config")
    @doc(
        "The market's settings, the subscription templates and the server's time", tag=tag, ok=S.ConfigOut,
        description="""
        What the app needs to show prices, fees and limits before acting (a publisher sees
        quantity × (P + F) before publishing), the timers, and the subscription message templates
        of this Mini Program with the page each opens (ask for them with
        `wx.requestSubscribeMessage({tmplIds})`). Settings change at the operators' will: read
        them at start and when the app comes to the foreground. `now` is the server's time.
        """,
    )
    @require(end)
    async def config(request: Request, session: Session):
        s = await market_settings.current()
        wx = request.app.ctx.wechat_config
        templates = wx.subscription_templates.get(end.value, {})
        return json(s.as_dict() | {
            "end": end.value,
            "appid": wx.app(end.value).appid,
            "image_link_ttl_s": LINK_TTL_S,
            "subscriptions": [{"event": event, "template_id": t.template_id, "page": t.page} for event, t in templates.items()],
            "now": now_iso(),
        })

    @bp.get("/wallet")
    @doc(
        "My balances and totals (fen)", tag=tag, ok=S.WalletOut,
        description="""
        `available_fen` can be spent or withdrawn; `withdrawing_fen` waits for a payout.
        `total_earned_fen` (worker): commissions credited for completed orders, P each — referral
        rewards are `referral_earned_fen`. `total_spent_fen` (publisher): what publishing has cost,
        net of refunds — the holds of published tasks minus refunded slots (expired, cancelled,
        abandoned late) and failed orders; it includes what is still held for live slots and orders.
        `total_recharged_fen`: recharges credited. Referral rewards earned so far are settled first.
        """,
    )
    @require(end)
    async def wallet(request: Request, session: Session):
        uid = session.user.id
        await orders.settle_due_for(uid)  # overdue timers and earned referral rewards show at once
        balances = await ledger.user_balances(uid)
        totals = await db.fetch_one(
            "SELECT "
            "COALESCE(SUM(CASE WHEN e.kind = 'order_complete' AND p.amount_fen > 0 THEN p.amount_fen ELSE 0 END), 0) AS earned, "
            "COALESCE(SUM(CASE WHEN e.kind = 'recharge' THEN p.amount_fen ELSE 0 END), 0) AS recharged, "
            "COALESCE(SUM(CASE WHEN e.kind IN ('publish', 'slot_refund', 'order_fail') THEN -p.amount_fen ELSE 0 END), 0) AS spent "
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
            "total_spent_fen": int(totals["spent"]),
        })

    @bp.get("/ledger")
    @doc(
        "My account details: every posting with the balance after it, newest first", tag=tag, ok=S.PostingPage, query=PAGE_QUERY,
        description="Each line: `amount_fen` (+ in, − out), `balance_after_fen`, the ledger `kind`, the `account` it moved and the task/order it belongs to.",
    )
    @require(end)
    async def my_ledger(request: Request, session: Session):
        cursor, n = page_args(request)
        await orders.settle_due_for(session.user.id)  # never a stale ledger (overdue timers, referral rewards)
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
        "Request a withdrawal: the amount moves to 'withdrawing' until an operator decides", tag=tag, body=S.WithdrawalRequestIn,
        ok=S.CreatedWithdrawalOut, ok_status=201, replay=True, errors=(InsufficientBalance,), unreachable=(UserNotFound,),
        description="""
        min_withdraw_fen ≤ amount ≤ available, within the day's cap (GET /config). The fee is
        taken when the payout succeeds. A payout (amount minus fee) of ¥2000 or more needs
        `real_name`, the payee's real name as on their WeChat account (WeChat's rule): without it
        `real_name_required`. A repeated `request_id` answers 200 with the first
        withdrawal and `replayed: true` (`idempotency_conflict` if the amount differs). Watch
        `withdrawal.changed`; when WeChat needs the user's confirmation, `transfer` holds the
        arguments of wx.requestMerchantTransfer.
        """,
    )
    @require(end)
    async def request_withdrawal(request: Request, session: Session):
        body = parse(S.WithdrawalRequestIn, request)
        await limit(request, "write", str(session.user.id))
        w = await withdrawals.request(session.user.id, body.amount_fen, request_id=body.request_id, real_name=body.real_name)
        poke_relay(request)
        view, status = created(_withdrawal(request, session, w), w.replayed)
        return json(view, status=status)

    @bp.get("/withdrawals")
    @doc("My withdrawals, newest first", tag=tag, ok=S.WithdrawalPage, query=PAGE_QUERY,
         description="Every withdrawal I asked for, with its state and, while WeChat waits for my confirmation, `transfer`.")
    @require(end)
    async def my_withdrawals(request: Request, session: Session):
        cursor, n = page_args(request)
        q = Withdrawal.filter(user_id=session.user.id)
        if cursor:
            q = q.filter(id__lt=cursor)
        return json(page([_withdrawal(request, session, w) for w in await q.order_by("-id").limit(n)], n))

    @bp.get("/withdrawals/<withdrawal_id:int>")
    @doc("One of my withdrawals", tag=tag, ok=S.WithdrawalOut,
         description="`transfer` holds the wx.requestMerchantTransfer arguments while WeChat waits for my confirmation (status `paying`).")
    @require(end)
    async def withdrawal_detail(request: Request, session: Session, withdrawal_id: int):
        return json(_withdrawal(request, session, await withdrawals.get_withdrawal(withdrawal_id, user_id=session.user.id)))

    @bp.get("/invitations")
    @doc(
        "My invite code, share scene, invitees and what each earned me", tag=tag, ok=S.InvitationsOut,
        description=f"""
        Share `share_path` (`{INVITE_PAGE}?scene=<invite code>`) with onShareAppMessage, or draw a
        poster around the Mini Program code (GET /invitations/qrcode). A new user who opens either
        and logs in for the first time is bound to me. Invitees newest first (at most 500; the totals
        `invitees_count` and `referral_earned_fen` cover all of them).
        """,
    )
    @require(end)
    async def invitations(request: Request, session: Session):
        u = session.user
        await orders.settle_due_for(u.id)  # invitees' overdue orders earn their rewards before they are shown
        rows = await db.fetch(
            "SELECT u.id, u.nickname, u.avatar, u.created_at, COALESCE(SUM(r.amount_fen), 0) AS earned FROM users u "
            "LEFT JOIN referral_rewards r ON r.invitee_id = u.id AND r.inviter_id = $1 "
            "WHERE u.inviter_id = $1 GROUP BY u.id, u.nickname, u.avatar, u.created_at ORDER BY u.id DESC LIMIT $2",
            u.id, INVITEES_LISTED,
        )
        # The totals cover every invitee, not only the ones listed.
        totals = await db.fetch_one(
            "SELECT (SELECT COUNT(*) FROM users WHERE inviter_id = $1) AS n, "
            "(SELECT COALESCE(SUM(amount_fen), 0) FROM referral_rewards WHERE inviter_id = $1) AS earned", u.id,
        )
        links = image_links(request)
        invitees = [{"id": r["id"], "nickname": r["nickname"], "avatar_url": links.url(r["avatar"]),
                     "joined_at": iso(_dt(r["created_at"])), "earned_fen": int(r["earned"])} for r in rows]
        return json({
            "invite_code": u.invite_code,
            "scene": u.invite_code,
            "share_path": f"{INVITE_PAGE}?scene={u.invite_code}",
            "referral_earned_fen": int(totals["earned"]),
            "invitees_count": int(totals["n"]),
            "invitees": invitees,
        })

    @bp.get("/invitations/qrcode")
    @doc(
        "My invitation's Mini Program code (PNG)", tag=tag,
        ok_content={"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}},
        description=f"""
        The Mini Program code (小程序码) of my invitation, made by WeChat's wxacode.getUnlimited with
        `scene` = my invite code, opening `{INVITE_PAGE}`; the page reads the scene from its
        `options.scene` and passes it to POST /login. Made once and kept (the code never changes).
        Download it with wx.downloadFile (with the Authorization header) to draw a poster.
        `wechat_unavailable`: retry later.
        """,
    )
    @require(end)
    async def invitation_qrcode(request: Request, session: Session):
        await limit(request, "write", str(session.user.id))
        png = await request.app.ctx.wechat.invitation_code(end.value, session.user.invite_code, INVITE_PAGE, request.app.ctx.storage)
        return raw(png, content_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    @bp.post("/uploads")
    @doc(
        "Upload an image (multipart field 'file'): proof, appeal evidence, task attachment or avatar", tag=tag, ok=S.UploadOut,
        ok_status=201,
        body_content={"multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                          "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}}}}},
        description="""
        PNG, JPEG, GIF or WebP, at most 5 MB and 24 megapixels. The image is decoded whole and
        re-encoded: only its pixels are kept (no metadata such as EXIF GPS; PNG and GIF are stored as
        PNG, a GIF's first frame). Returns a `ref` to put in `proof_image`, `evidence`, `attachment` or
        PUT /me/avatar, and a signed `url` to preview it. `upload_quota_exceeded` (403): the user's
        image storage (the market setting upload_quota_mb) is full.
        `wx.uploadFile({url, filePath, name: 'file', header: {Authorization}})`.
        """,
    )
    @require(end)
    async def upload(request: Request, session: Session):
        await limit(request, "upload", str(session.user.id))
        files = request.files.get("file") if request.files else None
        if not files:
            raise InvalidInput("Send the image as multipart/form-data field 'file'.", zh="请以 multipart/form-data 的 file 字段上传图片。", field="file")
        record = await uploads.accept(session.user.id, files.body, request.app.ctx.storage)
        return json({"ref": record.ref, "content_type": record.content_type, "size_bytes": record.size_bytes,
                     "url": image_links(request).url(record.ref)}, status=201)

    @bp.get("/uploads/<ref:str>")
    @doc(
        "An uploaded image, if I may see it", tag=tag,
        ok_content={t: {"schema": {"type": "string", "contentMediaType": t}} for t in ("image/png", "image/jpeg", "image/gif", "image/webp")},
        description="""
        With the Authorization header (wx.downloadFile). For `<image src>` use the signed `*_url`
        of the views instead. Served to its owner, to the publisher of the order it proves, and —
        for a task attachment — to workers; anyone else gets 404.
        """,
    )
    @require(end)
    async def download(request: Request, session: Session, ref: str):
        if not await uploads.may_view(ref, session.user):
            raise NotFound("No such image.", zh="没有这张图片。")
        record = await uploads.Upload.get(ref=ref)
        data = await request.app.ctx.storage.open_bytes(ref)
        if data is None:
            raise NotFound("No such image.", zh="没有这张图片。")
        return raw(data, content_type=record.content_type, headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

    return bp


def _tokens(request: Request, user, row, refresh_token: str) -> dict:
    token, exp = issue_token(request.app.ctx.keys, user, session_id=row.id)
    return {
        "token": token,
        "expires_at": iso(datetime.fromtimestamp(exp, timezone.utc)),
        "refresh_token": refresh_token,
        "refresh_expires_at": iso(row.expires_at),
        "user": user_view(user, image_links(request)),
    }


def _withdrawal(request: Request, session: Session, w) -> dict:
    """The withdrawal view plus, while WeChat waits for the user's confirmation, the arguments of
    wx.requestMerchantTransfer."""
    view = withdrawal_view(w)
    view["transfer"] = None
    # Only while WeChat waits for the user: the package is useless before (ACCEPTED / PROCESSING)
    # and after (TRANSFERING, CANCELING ...).
    if w.package_info and w.status.value == "paying" and w.transfer_state == "WAIT_USER_CONFIRM":
        cfg = request.app.ctx.wechat_config
        view["transfer"] = {
            "mchId": cfg.pay.mchid, "appId": cfg.app(session.end.value).appid,
            "package": w.package_info, "openId": session.user.openid,
        }
    return view


def _dt(value):
    import datetime as dt

    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
