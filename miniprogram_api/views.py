"""OpenAPI schemas of the response bodies (kept beside the view functions in common.py)."""

from miniprogram_api.docs import obj, page_of

TS = {"type": "string", "format": "date-time", "nullable": True}
INT, STR = "integer", "string"
NSTR = {"type": "string", "nullable": True}

TASK = obj(
    id=INT, title=STR, instructions=STR, attachment_kind=NSTR, attachment=NSTR, unit_price_fen=INT,
    quantity=INT, slots_untaken=INT, status=STR, countdown_s=INT, take_deadline_at=TS, created_at=TS, now=TS,
)
PUBLISHER_TASK = obj(
    **TASK["properties"], fee_fen=INT, slots_refunded=INT, orders_live=INT, review_window_s=INT,
    appeal_window_s=INT, held_fen=INT,
    funnel=obj(taken=INT, in_progress=INT, awaiting_review=INT, completed=INT, rejected=INT, appealing=INT, failed=INT, abandoned=INT, refunded_slots=INT),
)
ORDER = obj(
    id=INT, task_id=INT, status=STR, unit_price_fen=INT, taken_at=TS, submit_deadline_at=TS, submitted_at=TS,
    review_deadline_at=TS, rejected_at=TS, reject_reason=NSTR, appeal_deadline_at=TS, appealed_at=TS,
    appeal_reason=NSTR, appeal_evidence=NSTR, proof_text=NSTR, proof_image=NSTR, decision_note=NSTR,
    finished_at=TS, finished_by=NSTR, deadline_at=TS, now=TS,
    task=obj(id=INT, title=STR, instructions=STR, attachment_kind=NSTR, attachment=NSTR),
)
TASK_DETAIL = obj(task=PUBLISHER_TASK, orders={"type": "array", "items": ORDER})
USER = obj(id=INT, end=STR, nickname=STR, invite_code=STR, inviter_id={"type": "integer", "nullable": True}, created_at=TS)
LOGIN = obj(token=STR, expires_at=TS, created={"type": "boolean"}, user=USER)
WALLET = obj(available_fen=INT, withdrawing_fen=INT, total_earned_fen=INT, referral_earned_fen=INT, total_recharged_fen=INT, total_spent_fen=INT)
POSTING = obj(id=INT, at=TS, account=STR, kind=STR, amount_fen=INT, balance_after_fen=INT, task_id={"type": "integer", "nullable": True}, order_id={"type": "integer", "nullable": True}, memo=NSTR)
TRANSFER = {**obj(mchId=STR, appId=STR, package=STR, openId=STR), "nullable": True}
WITHDRAWAL = obj(id=INT, request_id=STR, amount_fen=INT, fee_fen=INT, payout_fen=INT, status=STR, method=NSTR, reason=NSTR, package_info=NSTR, transfer=TRANSFER, created_at=TS, decided_at=TS, finished_at=TS)
INVITATIONS = obj(
    invite_code=STR, scene=STR, share_path=STR, referral_earned_fen=INT,
    invitees={"type": "array", "items": obj(id=INT, nickname=STR, joined_at=TS, earned_fen=INT)},
)
RECHARGE = obj(
    recharge_id=INT, out_trade_no=STR, amount_fen=INT, status=STR,
    payment=obj(timeStamp=STR, nonceStr=STR, package=STR, signType=STR, paySign=STR),
)
UPLOAD = obj(ref=STR, content_type=STR, size_bytes=INT)

PAGE_TASKS, PAGE_ORDERS, PAGE_POSTINGS, PAGE_WITHDRAWALS = page_of(TASK), page_of(ORDER), page_of(POSTING), page_of(WITHDRAWAL)
PAGE_PUBLISHER_TASKS = page_of(PUBLISHER_TASK)
