"""The shapes of the Mini Program API: request bodies and response bodies, as pydantic models.

They are the single source of the OpenAPI document's schemas (`docs.py` publishes each model under
its name in `components/schemas`, which is what the Mini Programs' generated TypeScript types are
named after). Request models validate every body the server reads (strict: money must be a JSON
integer — never a string or a fraction — and unknown fields are refused, so a client mistake surfaces
at once). Response models are not used to build responses (the views in common.py do that, cheaply);
they describe them exactly: every key is required (null when it does not apply) and no other key
may appear, and the tests check every response the server sends against them.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models import inputs

from models.events import TIME_PATTERN
from models.ledger import EntryKind
from models.orders import OrderEvent, OrderStatus
from models.recharges import RechargeStatus
from models.tasks import TaskStatus
from models.users import End
from models.withdrawals import WithdrawalStatus

MAX_FEN = 100_000_000  # ¥1 000 000: above any amount the market allows; a fast first filter
UPLOAD_REF = r"^up_[A-Za-z0-9_-]{1,37}$"


def _line(value: str) -> str:
    if (bad := inputs.forbidden_character(value)) is not None:
        raise ValueError(f"must not contain control characters ({inputs.describe(bad)})")
    return value


def _text(value: str) -> str:
    if (bad := inputs.forbidden_character(value, multiline=True)) is not None:
        raise ValueError(f"must not contain control characters ({inputs.describe(bad)}); newline and tab are allowed")
    return inputs.normalize_newlines(value)


# Every text field of a request is a `Line` (one line) or a `Text` (multi-line: newline and tab
# allowed): the rule of models/inputs.py, no control characters. A plain `str` field would escape it
# (tests/api/test_control_characters.py probes every string field of the OpenAPI document).
# The pattern only documents the rule in the OpenAPI document; the validator enforces it.
Line = Annotated[str, AfterValidator(_line), Field(json_schema_extra={"pattern": inputs.SINGLE_LINE_PATTERN})]
Text = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"pattern": inputs.MULTI_LINE_PATTERN})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- requests --------------------------------------------------------------------------------------
class LoginIn(Strict):
    """Log in with a wx.login() code."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"code": "0a1b2c3d4e", "invite_code": "7KQ2MXPA"}]})
    code: Line = Field(min_length=1, max_length=128, description="the code from wx.login()")
    invite_code: Optional[Line] = Field(None, max_length=16, description="an inviter's code, bound at first login only")
    scene: Optional[Line] = Field(None, max_length=32, description="the Mini Program code's scene (an invite code)")
    nickname: Optional[Line] = Field(None, max_length=64, description="the nickname typed in the nickname input (first login)")


class RefreshIn(Strict):
    """Trade a refresh token for new tokens."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"refresh_token": "1042.Zq3x9LwXb2kR7tYp0mN4sVh8cJ1eQ6uA5dF3gH2iK0o"}]})
    refresh_token: Line = Field(min_length=3, max_length=200, description="the refresh_token of the last login or refresh")


class PublishIn(Strict):
    """A new task."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "title": "扫码关注公众号", "instructions": "用微信扫描附件中的二维码，关注后截图提交。", "unit_price_fen": 1200,
        "quantity": 5, "attachment_kind": "image", "attachment": "up_3sJx9mQbV2cT1yZk8LwPa7Dd", "request_id": "pub-5f0c2a"}]})
    title: Line = Field(min_length=1, max_length=64)
    instructions: Text = Field(min_length=1, max_length=2000)
    unit_price_fen: int = Field(gt=0, le=MAX_FEN, description="P, paid to the worker per completed order (fen)")
    quantity: int = Field(1, ge=1, le=10_000, description="slots; the admin's max_quantity applies (GET /config)")
    attachment_kind: Optional[Literal["image", "link", "text"]] = None
    attachment: Optional[Text] = Field(None, max_length=1024, description="an upload ref (image), a URL (link) or text")
    request_id: Line = Field(min_length=1, max_length=64, description="idempotency key chosen by the client: a repeat returns the first task (200, replayed: true)")
    min_approval_bp: int = Field(0, ge=0, le=10_000, description="only workers whose approval rate (GET /worker/record) is at least this, in basis points (9000 = 90 %); 0 = anybody. A worker whose record is still new does not qualify")
    min_completed_orders: int = Field(0, ge=0, le=100_000, description="only workers with at least this many completed orders in the record window; 0 = anybody")
    criteria: Optional[list[Line]] = Field(
        None, max_length=10, description="acceptance criteria (each ≤100 characters, distinct): a rejection must name one of them, or say why in ≥10 characters")


class BlockIn(Strict):
    """Block the worker of one of my orders (order_id), or a worker who took one of my tasks (worker_id)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"order_id": 42, "reason": "多次提交与任务无关的截图"}]})
    order_id: Optional[int] = Field(None, gt=0, le=2**62, description="an order of one of my tasks: its worker is blocked")
    worker_id: Optional[int] = Field(None, gt=0, le=2**62, description="or the worker's id (worker_id of my orders)")
    reason: Line = Field(min_length=1, max_length=200, description="why, one line (kept with the block; the worker is not told)")


class SubmitIn(Strict):
    """The worker's proof (both optional)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"proof_text": "已关注，截图见图片", "proof_image": "up_9QwErTyUiOpAsDfGhJkL12"}]})
    proof_text: Optional[Text] = Field(None, max_length=2000)
    proof_image: Optional[Line] = Field(None, max_length=40, description="an upload ref (POST /uploads)")


class AppealIn(Strict):
    """Why the rejection is wrong."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"reason": "截图清晰，已按要求关注", "evidence": "up_Zx8Cv7Bn6Mm5Kk4Jj3Hh2Gg"}]})
    reason: Text = Field(min_length=1, max_length=500)
    evidence: Optional[Line] = Field(None, max_length=40, description="an upload ref (POST /uploads)")


class RejectIn(Strict):
    """Why the proof is not accepted."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"criterion": 0, "reason": "截图看不清二维码"}, {"reason": "截图是别人的账号，不是本人完成的"}]})
    criterion: Optional[int] = Field(None, ge=0, le=9, description="the index of the task's criterion the proof fails; null: \"other\"")
    reason: Optional[Text] = Field(
        None, max_length=500, description="why; required without a criterion, and then at least 10 characters when the task declared criteria")


class AnswerIn(Strict):
    """The publisher's answer to an appeal (once, before the operator decides)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"text": "截图中的账号与接单账号不一致", "image": "up_Zx8Cv7Bn6Mm5Kk4Jj3Hh2Gg"}]})
    text: Text = Field(min_length=1, max_length=500)
    image: Optional[Line] = Field(None, max_length=40, description="an upload ref (POST /uploads)")


class MoneyRequestIn(Strict):
    """An amount and the client's idempotency key."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"amount_fen": 5000, "request_id": "rq-20261125-01"}]})
    amount_fen: int = Field(gt=0, le=MAX_FEN)
    request_id: Line = Field(min_length=1, max_length=64, description="idempotency key chosen by the client: a repeat returns the first result (200, replayed: true)")



class WithdrawalRequestIn(MoneyRequestIn):
    """An amount, the client's idempotency key and, for a payout of ¥2000 or more, the payee's real name."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"amount_fen": 5000, "request_id": "rq-20261125-01"},
        {"amount_fen": 300000, "request_id": "rq-20261125-02", "real_name": "王小明"}]})
    real_name: Optional[Line] = Field(
        None, min_length=1, max_length=32,
        description="the payee's real name as on their WeChat account; required when the payout (amount minus "
        "the fee) is ¥2000 or more (WeChat's rule, else 400 real_name_required), ignored below. Kept only until "
        "the payout ends, never shown.")

class ProfileIn(Strict):
    """Profile fields to change (WeChat no longer gives nicknames: the app's nickname input does)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"nickname": "小王"}]})
    nickname: Line = Field(min_length=1, max_length=64, description="from <input type=\"nickname\">")


class AvatarIn(Strict):
    """The profile picture: an upload of mine (from <button open-type="chooseAvatar"> then POST /uploads)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"ref": "up_3sJx9mQbV2cT1yZk8LwPa7Dd"}]})
    ref: Line = Field(min_length=1, max_length=40, description="an upload ref (POST /uploads)")


# --- responses -------------------------------------------------------------------------------------
class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


Timestamp = Annotated[str, Field(pattern=TIME_PATTERN, json_schema_extra={"format": "date-time"},
                                 description="UTC, microseconds, Z", examples=["2026-11-25T10:52:42.162808Z"])]
Now = Annotated[str, Field(pattern=TIME_PATTERN, json_schema_extra={"format": "date-time"},
                           description="the server's time when it answered: count down against it, never the phone's clock")]
Fen = Annotated[int, Field(description="integer fen (1 yuan = 100 fen)")]
Cursor = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,17}$", description="opaque: pass it back as ?cursor= for the next page")]
ImageUrl = Annotated[Optional[str], Field(json_schema_extra={"format": "uri"},
                                          description="a signed URL for <image src> (no token needed), valid at least 30 minutes; null when there is no image")]
UploadRef = Annotated[Optional[str], Field(description="an upload ref")]


class PublisherRecord(Out):
    """A publisher's record from outcomes only, over the orders taken in the last `window_days`
    (refreshed by the scheduler: `computed_at`). While `new` (fewer than `min_sample` reviewed
    orders) every rate is null: show "新发布者" instead."""

    new: bool = Field(description="fewer than min_sample reviewed orders: show 新发布者, not rates")
    window_days: int
    min_sample: int
    tasks: int = Field(description="tasks published in the window")
    orders: int = Field(description="orders taken of those tasks in the window")
    reviewed: int = Field(description="orders approved (in person or automatically) or rejected")
    approval_bp: Optional[int] = Field(description="approved (in person or automatically) / reviewed, basis points")
    rejection_bp: Optional[int] = Field(description="rejected / reviewed")
    auto_approve_bp: Optional[int] = Field(description="approved by the review timer because the publisher never reviewed / reviewed")
    appeal_bp: Optional[int] = Field(description="rejections the worker appealed / rejections (null without rejections)")
    appeals_decided: int = Field(description="appeals an operator decided")
    appeals_lost_bp: Optional[int] = Field(description="appeals the publisher lost / appeals decided (null without any)")
    median_review_s: Optional[int] = Field(description="median seconds from submission to the publisher's own approve/reject")
    computed_at: Optional[Timestamp] = Field(description="when the record was computed; null: nothing in the window")


class WorkerLimit(Out):
    """An automatic limit running on a worker: takes answer worker_limited until `until`."""

    reason: Literal["abandons", "appeals_lost"] = Field(description="abandons: too many orders given up; appeals_lost: too many appeals decided against the worker")
    count: int = Field(description="such events in the last window_days")
    max: int = Field(description="the limit (settings limit_max_abandons / limit_max_appeals_lost)")
    window_days: int
    until: Timestamp = Field(description="takes are possible again then (the oldest event leaves the window)")


class WorkerRecord(Out):
    """A worker's record over the orders taken in the last `window_days` (rates null while `new`)."""

    new: bool = Field(description="fewer than min_sample final outcomes (completed + failed)")
    window_days: int
    min_sample: int
    orders: int = Field(description="orders taken in the window")
    completed: int
    failed: int
    abandoned: int
    approval_bp: Optional[int] = Field(description="completed / (completed + failed), basis points: what task minimums compare")
    abandon_bp: Optional[int] = Field(description="abandoned / orders")
    appeals_won: int
    appeals_lost: int
    limited: Optional[WorkerLimit] = Field(description="an automatic limit running now, or null")
    computed_at: Optional[Timestamp] = Field(description="when the record was computed; null: nothing in the window")


class TaskOut(Out):
    """A task as the hall shows it to workers."""

    id: int
    title: str
    instructions: str
    attachment_kind: Optional[Literal["image", "link", "text"]]
    attachment: Optional[str] = Field(description="an upload ref (image), a URL (link) or text")
    attachment_url: ImageUrl
    criteria: Optional[list[str]] = Field(description="acceptance criteria the publisher declared (a rejection names one)")
    unit_price_fen: Fen = Field(description="P: what the worker earns")
    quantity: int
    slots_untaken: int
    status: TaskStatus
    countdown_s: int = Field(description="seconds the worker has to submit after taking")
    take_deadline_at: Timestamp = Field(description="untaken slots are refunded then")
    created_at: Timestamp
    min_approval_bp: int = Field(description="only workers with at least this approval rate may take it (basis points; 0 = anybody)")
    min_completed_orders: int = Field(description="only workers with at least this many completed orders may take it (0 = anybody)")
    now: Now


class HallTaskOut(TaskOut):
    """A task in the hall, with its publisher's record."""

    publisher_record: PublisherRecord


class Funnel(Out):
    """The task's orders per state, slots taken and slots refunded."""

    taken: int
    in_progress: int
    awaiting_review: int
    completed: int
    rejected: int
    appealing: int
    failed: int
    abandoned: int
    refunded_slots: int


class PublisherTaskOut(TaskOut):
    """A task as its publisher sees it."""

    fee_fen: Fen = Field(description="F per slot, the platform's fee")
    slots_refunded: int
    orders_live: int
    review_window_s: int
    appeal_window_s: int
    held_fen: Fen = Field(description="still in escrow for this task: (untaken slots + live orders) × (P + F)")
    funnel: Funnel


class PublishedTaskOut(PublisherTaskOut):
    """The task a publish created, or (repeated request_id) the one it created before."""

    replayed: bool = Field(description="true: this request_id was used before and this is the first result (HTTP 200)")


class OrderTask(Out):
    """What the worker must do (the order's task)."""

    id: int
    title: str
    instructions: str
    attachment_kind: Optional[Literal["image", "link", "text"]]
    attachment: Optional[str]
    attachment_url: ImageUrl
    criteria: Optional[list[str]] = Field(None, description="acceptance criteria the publisher declared (null in the take's own answer: read the order)")


class TaskOrderOut(Out):
    """An order (as listed inside its task)."""

    id: int
    task_id: int
    status: OrderStatus
    unit_price_fen: Fen
    taken_at: Timestamp
    submit_deadline_at: Timestamp
    submitted_at: Optional[Timestamp]
    review_deadline_at: Optional[Timestamp]
    rejected_at: Optional[Timestamp]
    reject_reason: Optional[str]
    reject_criterion: Optional[str] = Field(description="the task's criterion the proof fails; null with a rejection: \"other\" (see reject_reason)")
    appeal_deadline_at: Optional[Timestamp]
    appealed_at: Optional[Timestamp]
    appeal_reason: Optional[str]
    appeal_evidence: UploadRef
    appeal_evidence_url: ImageUrl
    proof_text: Optional[str]
    proof_image: UploadRef
    proof_image_url: ImageUrl
    answer_text: Optional[str] = Field(description="the publisher's answer to the appeal")
    answer_image: UploadRef
    answer_image_url: ImageUrl
    answered_at: Optional[Timestamp]
    answer_due_at: Optional[Timestamp] = Field(description="an automatic rule decides the appeal for the worker unless the publisher answers by then")
    decision_note: Optional[str] = Field(description="the operator's note (or the automatic rule's) when an appeal was decided")
    finished_at: Optional[Timestamp]
    finished_by: Optional[OrderEvent] = Field(description="the event that made the order final")
    deadline_at: Optional[Timestamp] = Field(description="the deadline running now (submit, review or appeal); null when none")
    now: Now


class OrderOut(TaskOrderOut):
    """An order with its task."""

    task: OrderTask


class ReviewedOrderOut(TaskOrderOut):
    """An order of one of my tasks (listed inside it), with its worker's record."""

    worker_id: int = Field(description="who took it (POST /publisher/blocks can block them)")
    worker_record: WorkerRecord


class PublisherOrderOut(OrderOut):
    """An order of one of my tasks, with its task and its worker's record."""

    worker_id: int = Field(description="who took it (POST /publisher/blocks can block them)")
    worker_record: WorkerRecord


class PublisherOverviewOut(Out):
    """My home's figures, over all my tasks."""

    held_fen: Fen = Field(description="in escrow for all my tasks: (untaken slots + live orders) × (P + F), summed")
    running_tasks: int = Field(ge=0, description="my tasks `open` or `full`")
    awaiting_review: int = Field(ge=0, description="orders of my tasks waiting for my review (GET /publisher/orders?need=review)")
    appeals_to_answer: int = Field(ge=0, description="appeals I have not answered (GET /publisher/orders?need=answer)")


class TaskDetailOut(Out):
    """One of my tasks with its orders (newest first, at most 200)."""

    task: PublisherTaskOut
    orders: list[ReviewedOrderOut]
    orders_next_cursor: Optional[Cursor] = Field(
        description="null when `orders` holds every order of the task; else the rest, a page at a time: "
                    "GET /publisher/tasks/{id}/orders?cursor=")


class BlockOut(Out):
    """A worker I blocked."""

    id: int
    worker_id: int
    nickname: str
    reason: str
    created_at: Timestamp
    worker_record: WorkerRecord


class CreatedBlockOut(BlockOut):
    """The block a request made, or (the worker was blocked already) the first block."""

    replayed: bool = Field(description="true: the worker was blocked already; this is the first block, its reason unchanged (HTTP 200)")


class MyRecordOut(Out):
    """My record as publishers and operators see it, and any limit running on me."""

    record: WorkerRecord
    now: Now


class UserOut(Out):
    """My account."""

    id: int
    end: End
    nickname: str
    avatar: UploadRef
    avatar_url: ImageUrl
    invite_code: str
    inviter_id: Optional[int]
    created_at: Timestamp


class TokensOut(Out):
    """A session's tokens: a short-lived access token and the single-use refresh token that renews it."""

    token: str = Field(description="the access token (15 minutes): send as Authorization: Bearer <token>")
    expires_at: Timestamp = Field(description="when the access token expires (then POST /refresh)")
    refresh_token: str = Field(description="single-use: trade it at POST /refresh for new tokens, and keep the new one")
    refresh_expires_at: Timestamp = Field(description="the refresh token expires then unless used (30 days unused, 90 days after login)")
    user: UserOut


class LoginOut(TokensOut):
    """A new session."""

    created: bool = Field(description="true at the first login (the account was created now)")


class WalletOut(Out):
    """My balances and totals."""

    available_fen: Fen = Field(description="spendable and withdrawable now")
    withdrawing_fen: Fen = Field(description="asked for withdrawal, waiting for the operator or the payout")
    total_earned_fen: Fen = Field(description="worker: every commission credited for completed orders (P each); referral rewards not included")
    referral_earned_fen: Fen = Field(description="every referral reward my invitees earned me (settled or about to be)")
    total_recharged_fen: Fen = Field(description="every recharge credited")
    total_spent_fen: Fen = Field(description="publisher: what publishing has cost, net of refunds: holds for published tasks minus refunded slots and failed orders (includes what is still in escrow for live slots and orders)")


class PostingOut(Out):
    """One line of my account details."""

    id: int
    at: Timestamp
    account: Literal["available", "withdrawing"]
    kind: EntryKind
    amount_fen: Fen = Field(description="+ in, − out")
    balance_after_fen: Fen
    task_id: Optional[int]
    order_id: Optional[int]
    memo: Optional[str]


class Transfer(Out):
    """The arguments of wx.requestMerchantTransfer (base library ≥ 3.3.0)."""

    mchId: str
    appId: str
    package: str
    openId: str


class WithdrawalOut(Out):
    """A withdrawal."""

    id: int
    request_id: str
    amount_fen: Fen = Field(description="A, moved to withdrawing")
    fee_fen: Fen = Field(description="W, taken when the payout succeeds")
    payout_fen: Fen = Field(description="A − W, what reaches the user")
    status: WithdrawalStatus
    method: Optional[Literal["wechat", "manual"]]
    reason: Optional[str] = Field(description="why it was rejected or failed")
    package_info: Optional[str]
    transfer: Optional[Transfer] = Field(description="while WeChat waits for the user to confirm: call wx.requestMerchantTransfer(transfer)")
    created_at: Timestamp
    decided_at: Optional[Timestamp]
    finished_at: Optional[Timestamp]


class CreatedWithdrawalOut(WithdrawalOut):
    """The withdrawal a request created, or (repeated request_id) the one it created before."""

    replayed: bool = Field(description="true: this request_id was used before and this is the first result (HTTP 200)")


class Invitee(Out):
    id: int
    nickname: str
    avatar_url: ImageUrl
    joined_at: Timestamp
    earned_fen: Fen = Field(description="what this invitee's completed orders earned me")


class InvitationsOut(Out):
    """My invite code and invitees."""

    invite_code: str
    scene: str = Field(description="the scene of my Mini Program code (GET /invitations/qrcode)")
    share_path: str = Field(description="the page a share opens, with the scene")
    referral_earned_fen: Fen = Field(description="what all my invitees have earned me, whether listed or not")
    invitees_count: int = Field(ge=0, description="how many people I invited (`invitees` lists the newest 500)")
    invitees: list[Invitee]


class Payment(Out):
    """The arguments of wx.requestPayment."""

    timeStamp: str
    nonceStr: str
    package: str
    signType: Literal["RSA"]
    paySign: str


class RechargeOut(Out):
    """A recharge. `payment` is there while it waits for payment (null once paid, closed or expired)."""

    recharge_id: int
    out_trade_no: str
    amount_fen: Fen
    status: RechargeStatus
    expires_at: Timestamp = Field(description="after this it can no longer be paid")
    payment: Optional[Payment]


class CreatedRechargeOut(RechargeOut):
    """The recharge a request created, or (repeated request_id) the one it created before."""

    replayed: bool = Field(description="true: this request_id was used before and this is the first result (HTTP 200)")


class UploadOut(Out):
    """An uploaded image."""

    ref: str = Field(pattern=UPLOAD_REF, description="put it in proof_image, evidence, attachment or PUT /me/avatar")
    content_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp"]
    size_bytes: int
    url: ImageUrl


class SubscriptionTemplateOut(Out):
    """One subscription message this Mini Program may ask the user to accept."""

    event: str = Field(description="what it is sent for")
    template_id: str = Field(description="pass to wx.requestSubscribeMessage({tmplIds})")
    page: str = Field(description="the page the message opens, with {placeholders} filled by the server")


class ConfigOut(Out):
    """The market's settings in force, for the apps (they change; read them at start and on focus)."""

    end: End
    appid: str = Field(description="this Mini Program's AppID")
    min_unit_price_fen: Fen
    max_unit_price_fen: Fen
    max_quantity: int
    publish_fee_bp: int = Field(description="F = floor(P × publish_fee_bp / 10000): a task costs quantity × (P + F)")
    min_withdraw_fen: Fen
    withdraw_fee_bp: int = Field(description="W = floor(A × withdraw_fee_bp / 10000), taken when the payout succeeds")
    daily_withdraw_cap_fen: Fen = Field(description="per user per day (Beijing day)")
    max_orders_in_progress: int = Field(description="orders a worker may hold in progress at once")
    take_window_s: int = Field(description="a new task's untaken slots are refunded after this")
    countdown_s: int = Field(description="a worker must submit within this after taking")
    review_window_s: int = Field(description="an order not reviewed within this is approved automatically")
    appeal_window_s: int = Field(description="a rejection not appealed within this fails the order")
    worker_invite_bp: int = Field(description="a worker's inviter earns floor(P × worker_invite_bp / 10000) per completed order")
    publisher_invite_bp: int = Field(description="a publisher's inviter earns floor(F × publisher_invite_bp / 10000) per completed order")
    upload_quota_mb: int = Field(description="a user's image storage (stored bytes of every upload) in MiB; beyond it uploads answer upload_quota_exceeded")
    record_window_days: int = Field(description="records (publisher_record, worker_record) count the orders taken in this many days")
    record_min_sample: int = Field(description="below this many reviewed orders a record is new: its rates are null")
    limit_window_days: int = Field(description="automatic worker limits look at this many days")
    limit_max_abandons: int = Field(description="this many abandons in limit_window_days pause a worker's takes (0 = off)")
    limit_max_appeals_lost: int = Field(description="this many appeals lost in limit_window_days pause them too (0 = off)")
    compliance_hold_on_match: int = Field(description="1: a task matching a prohibited term is held for an operator (status held); 0: the publish is refused (prohibited_content)")
    referral_requires_first_order: int = Field(description="1: an inviter earns rewards only from invitees who have completed a first order")
    image_link_ttl_s: int = Field(description="an image URL in a view is valid at least this long")
    subscriptions: list[SubscriptionTemplateOut] = Field(description="the templates to ask for with wx.requestSubscribeMessage")
    now: Now


class ErrorEntry(Out):
    """One error code of the catalog."""

    code: str
    status: int
    message: dict[str, str] = Field(description="the message in each language (zh-CN, en), templates over details")
    meaning: str
    details: dict = Field(description="JSON Schema of `details`")


class ErrorCatalogOut(Out):
    """Every error code the API can answer, with its status, messages and details."""

    languages: list[str]
    default_language: str
    errors: list[ErrorEntry]


def _page(item: type[Out], doc: str) -> type[Out]:
    model = type(f"{item.__name__.removesuffix('Out')}Page", (Out,), {
        "__annotations__": {"items": list[item], "next_cursor": Optional[Cursor]},
        "__doc__": doc,
        "next_cursor": Field(description="null on the last page"),
    })
    return model


TaskPage = _page(HallTaskOut, "A page of the hall, newest first.")
BlockPage = _page(BlockOut, "A page of the workers I blocked, newest first.")
PublisherTaskPage = _page(PublisherTaskOut, "A page of my tasks, newest first.")
OrderPage = _page(OrderOut, "A page of my orders, newest first.")
TaskOrderPage = _page(ReviewedOrderOut, "A page of the orders of one of my tasks, newest first.")
PublisherOrderPage = _page(PublisherOrderOut, "A page of the orders of my tasks that wait for me, the soonest first.")
PostingPage = _page(PostingOut, "A page of my account details, newest first.")
WithdrawalPage = _page(WithdrawalOut, "A page of my withdrawals, newest first.")
