"""The panel's two languages: Chinese (default: the operators are Chinese) and English.

Templates and handlers write English text and wrap it in `t(...)`; English shows it as is, Chinese
looks it up in `ZH` (a missing entry falls back to English — a test checks every template string has
one). `?lang=en` / `?lang=zh` switches and is remembered in a cookie.

The domain's messages and the settings validator's reasons are English and speak in stored units
(fen, seconds); `domain_message` and `reason` translate them and convert the units people use.
"""

from __future__ import annotations

import re

from models.errors import DomainError

LANGS = ("zh", "en")
DEFAULT = "zh"
LANG_COOKIE = "market_admin_lang"

ZH: dict[str, str] = {
    # chrome
    "Task market admin": "任务平台管理后台", "Dashboard": "仪表盘", "Appeals": "申诉", "Withdrawals": "提现",
    "Customers": "客户", "Tasks": "任务", "Orders": "订单", "Audit log": "审计日志", "Settings": "设置",
    "Operators": "操作员", "Log in": "登录", "Log out": "退出", "Username": "用户名", "Password": "密码",
    "Times in Asia/Shanghai. Amounts in yuan (¥).": "时间为北京时间（Asia/Shanghai），金额单位为元（¥）。",
    "Back to the dashboard": "返回仪表盘", "Forbidden": "无权限", "Not found": "未找到", "Not possible": "无法完成",
    "Only the owner may do this.": "只有所有者可以执行此操作。",
    "The form has expired or did not come from this panel (CSRF check failed). Reload the page and try again.":
        "表单已过期或并非来自本后台（CSRF 校验失败）。请刷新页面后重试。",
    "The form has expired; please try again.": "表单已过期，请重试。",
    "Wrong username or password.": "用户名或密码错误。",
    "Too many failed logins. Try again in {m} minutes.": "登录失败次数过多，请 {m} 分钟后再试。",
    "No such customer.": "没有这个客户。", "No such task.": "没有这个任务。", "No such order.": "没有这个订单。",
    # roles, ends, actors, targets
    "owner": "所有者", "operator": "操作员", "worker": "接单端", "publisher": "发单端", "user": "用户",
    "timer": "定时器", "wechat": "微信", "system": "系统", "order": "订单", "task": "任务", "withdrawal": "提现",
    "settings": "设置", "recharge": "充值", "manual": "手动", "—": "—",
    # states
    "in_progress": "进行中", "awaiting_review": "待审核", "rejected": "已驳回", "appealing": "申诉中",
    "completed": "已完成", "failed": "已失败", "abandoned": "已放弃", "open": "可接单", "full": "已接满",
    "expired": "已过期", "cancelled": "已取消", "finished": "已结束", "pending": "待处理", "paying": "打款中",
    "paid": "已打款", "banned": "已封禁", "active": "正常", "deactivated": "已停用",
    # accounts and ledger entries
    "available": "可用余额", "withdrawing": "提现中",
    "entry.recharge": "充值", "entry.publish": "发布任务（托管）", "entry.slot_refund": "未接名额退款",
    "entry.order_complete": "订单完成", "entry.order_fail": "订单失败退款", "entry.referral_settle": "邀请奖励到账",
    "entry.withdraw_request": "申请提现", "entry.withdraw_paid": "提现已打款", "entry.withdraw_returned": "提现退回",
    "entry.adjustment": "人工调账",
    # order events (finished_by) and audit actions
    "event.approve": "发单方通过", "event.review_timeout": "审核超时自动通过", "event.accept_rejection": "接单方接受驳回",
    "event.appeal_timeout": "申诉超时失败", "event.arbitrate_worker": "仲裁：接单方胜", "event.arbitrate_publisher": "仲裁：发单方胜",
    "event.abandon": "接单方放弃",
    "action.order.take": "接单", "action.order.submit": "提交", "action.order.countdown_end": "倒计时结束",
    "action.order.abandon": "放弃", "action.order.approve": "通过", "action.order.review_timeout": "审核超时自动通过",
    "action.order.reject": "驳回", "action.order.accept_rejection": "接受驳回", "action.order.appeal": "申诉",
    "action.order.appeal_timeout": "申诉超时", "action.order.arbitrate_worker": "仲裁：接单方胜",
    "action.order.arbitrate_publisher": "仲裁：发单方胜", "action.task.publish": "发布任务", "action.task.cancel": "取消任务",
    "action.task.expire": "接单时限到期", "action.settings.update": "修改设置", "action.user.register": "注册",
    "action.user.ban": "封禁", "action.user.unban": "解封", "action.ledger.adjust": "人工调账",
    "action.withdrawal.request": "申请提现", "action.withdrawal.approve": "批准提现（微信打款）",
    "action.withdrawal.mark_paid": "标记已手动打款", "action.withdrawal.reject": "拒绝提现",
    "action.withdrawal.payout_succeeded": "微信打款成功", "action.withdrawal.payout_failed": "微信打款失败",
    "action.referral.settle": "邀请奖励结算", "action.recharge.credit": "充值到账", "action.operator.login": "操作员登录",
    "action.operator.create": "创建操作员", "action.operator.activate": "启用操作员", "action.operator.deactivate": "停用操作员",
    "action.operator.password": "重设密码", "action.operator.locked": "账号登录锁定", "action.operator.ip_locked": "IP 登录锁定",
    # dashboard
    "updated": "更新于", "Appeals waiting": "待处理申诉", "oldest": "最早", "Withdrawals waiting": "待处理提现",
    "Payouts in flight": "打款中", "Open tasks": "可接任务", "slots": "名额", "Today": "今日", "Published": "发布",
    "Completed": "完成", "orders": "单", "Refunded": "退款", "Fees earned": "平台手续费收入", "Referral rewards": "邀请奖励",
    "All time": "累计", "Fees earned (fees account)": "手续费账户余额", "Orders by state": "各状态订单数", "Health": "运行状况",
    "Timer lag (oldest overdue deadline)": "定时器延迟（最早逾期的截止时间）", "Outbox waiting": "待发送消息",
    "Outbox given up": "发送失败已放弃", "Ledger audit": "账本核对", "at": "于", "clean": "无误", "checking…": "核对中…",
    "{n} problems": "{n} 处问题", "Connection lost; retrying…": "连接中断，正在重试…",
    # settings
    "A change applies to tasks published from now on; running tasks and orders keep the values they started with.":
        "修改只影响之后发布的任务；进行中的任务和订单保持其开始时的数值。",
    "Last changed": "最近修改", "history": "修改记录", "Setting": "设置项", "Value": "数值", "Stored as": "存储值",
    "Save settings": "保存设置", "min": "分钟", "unit.yuan": "分", "unit.percent": "基点", "unit.minutes": "秒", "unit.count": "",
    "Minimum unit price": "最低单价", "Maximum unit price": "最高单价", "Maximum slots per task": "每个任务最多名额",
    "Publishing fee": "发布手续费", "Worker inviter reward (of the unit price)": "接单端邀请人奖励（按单价）",
    "Publisher inviter reward (of the fee)": "发单端邀请人奖励（按手续费）", "Withdrawal fee": "提现手续费",
    "Minimum withdrawal": "最低提现金额", "Daily withdrawal cap per user": "每人每日提现上限",
    "Orders in progress per worker": "每个接单者同时进行的订单数", "Take window": "接单时限",
    "Task countdown (at most 10 minutes)": "做单倒计时（最长 10 分钟）", "Review window": "审核时限", "Appeal window": "申诉时限",
    "Someone else changed the settings meanwhile. The form now shows their values; check and save again.":
        "在此期间有人修改了设置。表单已显示最新数值，请核对后重新保存。",
    "This field is required.": "此项必填。", "Must not be negative.": "不能为负数。", "Not a number.": "不是有效数字。",
    "Too large.": "数值过大。", "At most two decimals (fen).": "最多两位小数（精确到分）。",
    "At most two decimals (0.01 %).": "最多两位小数（0.01%）。", "Must be a whole number of seconds.": "必须是整数秒。",
    "Must be a whole number.": "必须是整数。", "Must not be zero.": "不能为零。",
    # appeals
    "{n} waiting, oldest first": "{n} 条待处理，最早的在前", "Order": "订单", "appealed": "申诉于", "fee": "手续费",
    "Task": "任务", "Proof": "提交凭证", "no text": "无文字", "no image": "无图片", "image": "图片", "submitted": "提交于",
    "Rejection reason": "驳回理由", "Appeal": "申诉", "Note (sent to the worker)": "处理说明（会发送给接单者）",
    "Worker wins: pay the worker?": "判接单方胜：向接单者付款？", "Publisher wins: refund the publisher?": "判发单方胜：退款给发单者？",
    "Worker wins": "接单方胜", "Publisher wins": "发单方胜", "pay": "付款", "refund": "退款", "No appeals waiting.": "没有待处理的申诉。",
    "Choose who wins.": "请选择哪一方胜。", "A note is required: it is sent to the worker and kept in the audit log.":
        "必须填写说明：会发送给接单者并记入审计日志。", "At most {n} characters.": "最多 {n} 个字符。",
    # withdrawals
    "Withdrawal": "提现", "requested": "申请于", "to pay": "实付", "Decide": "处理",
    "Pay {a} to this user through WeChat?": "通过微信向该用户打款 {a}？", "Approve: pay through WeChat": "批准：微信打款",
    "Payment reference": "打款凭证号", "Mark as paid by hand? Only if the money was really sent.": "标记为已手动打款？仅在确实已付款时操作。",
    "Mark paid by hand": "标记已手动打款", "Reason": "理由", "Reject": "拒绝", "Balances": "余额",
    "No withdrawals waiting.": "没有待处理的提现。", "Customer": "客户", "Amount": "金额", "Approved": "批准于", "By": "操作人",
    "WeChat bill": "微信转账单", "None.": "无。", "Recently decided": "最近处理", "State": "状态", "How": "方式",
    "Finished": "结束于", "The payment reference is required.": "必须填写打款凭证号。",
    "A reason is required: the user is told.": "必须填写理由：会告知用户。",
    # customers
    "Search by id, invite code, openid or nickname": "按 ID、邀请码、openid 或昵称搜索", "Search": "搜索", "End": "端",
    "Nickname": "昵称", "Invite code": "邀请码", "Inviter": "邀请人", "Joined": "注册于", "Nobody found.": "没有找到。",
    "No customers yet.": "还没有客户。", "Orders in progress": "进行中的订单", "Ban reason": "封禁理由",
    "Referral earnings": "邀请收益", "not yet settled": "未结算", "Ban": "封禁", "Note": "备注", "Unban": "解封",
    "Ban this customer? Their sessions end at once.": "封禁该客户？其登录会立即失效。", "Manual adjustment": "人工调账",
    "Amount (¥, negative to debit)": "金额（元，负数为扣款）", "Reason (required, kept in the audit log)": "理由（必填，记入审计日志）",
    "Adjust this balance?": "确认调整余额？", "Adjust balance": "调整余额", "Ledger": "账户明细", "Older": "更早",
    "Newer": "更新", "Page {n}": "第 {n} 页", "Orders as worker": "作为接单者的订单", "Price": "单价", "Taken": "接单于",
    "Tasks published": "发布的任务", "Title": "标题", "Slots": "名额", "All orders of this publisher": "该发单者的全部订单",
    "Invitees": "被邀请人", "Rewards": "奖励笔数", "Earned": "收益", "Requested": "申请于",
    "Audit log of this customer": "该客户的审计日志", "A reason is required.": "必须填写理由。",
    "Time": "时间", "Account": "账户", "Kind": "类型", "Balance after": "变动后余额", "For": "关联", "No postings.": "没有明细。",
    # tasks / orders / history
    "any": "全部", "Publisher #": "发单者 ID", "Worker #": "接单者 ID", "Task #": "任务 ID", "From": "从", "To": "到",
    "Filter": "筛选", "Publisher": "发单者", "Worker": "接单者", "Fee": "手续费", "Take deadline": "接单截止",
    "Nothing matches.": "没有符合条件的记录。", "Next deadline": "下一个截止时间", "Submit by": "提交截止",
    "Review by": "审核截止", "Appeal by": "申诉截止", "Decision note": "处理说明", "History": "历史记录", "Money": "资金",
    "Key": "幂等键", "No money moved for this order yet (it was held when the task was published).": "该订单尚无资金变动（资金在发布任务时已托管）。",
    "Who": "操作者", "What": "操作", "Details": "详情", "No history.": "没有历史记录。", "Slots untaken": "未接名额",
    "refunded": "已退款", "live orders": "进行中订单", "Timers in force": "生效的时限", "Instructions": "任务说明",
    # audit
    "Actor #": "操作者 ID", "Action starts with": "操作前缀", "Target": "对象", "Target #": "对象 ID",
    # operators
    "Role": "角色", "Last login": "最近登录", "Locked until": "锁定至", "New password": "新密码", "Activate": "启用",
    "Deactivate": "停用", "Set": "设置", "New operator": "新建操作员", "Create": "创建",
    "You cannot deactivate yourself.": "不能停用自己。",
    # done messages
    "Settings saved.": "设置已保存。", "Nothing changed.": "没有修改。", "Appeal decided.": "申诉已处理。",
    "Approved; the WeChat transfer has been created and waits for the user to confirm it.": "已批准，微信转账单已创建，等待用户确认收款。",
    "Approved and paid.": "已批准并打款成功。", "Approved, but WeChat refused the transfer: the money went back to the user.":
        "已批准，但微信拒绝了转账：款项已退回用户余额。",
    "Approved; the WeChat transfer will be retried automatically.": "已批准，微信转账将自动重试。",
    "Marked as paid.": "已标记为已打款。", "Withdrawal rejected; the money went back to the user.": "提现已拒绝，款项已退回用户。",
    "Customer banned; their sessions have ended.": "客户已封禁，其登录已失效。", "Customer unbanned.": "客户已解封。",
    "Balance adjusted.": "余额已调整。", "Operator created.": "操作员已创建。", "Operator updated.": "操作员已更新。",
    "Password set; that operator's sessions have ended.": "密码已设置，该操作员的登录已失效。",
    # domain errors and validation reasons
    "Already decided by someone else (now: {status}).": "已被他人处理（当前状态：{status}）。",
    "This is not possible in the current state ({status}).": "当前状态（{status}）下无法执行此操作。",
    "The time for this action has run out.": "此操作的时限已过。", "The available balance is not enough.": "可用余额不足。",
    "No such user.": "没有这个用户。", "Not found.": "未找到。",
    "Someone else changed this at the same moment; reload and try again.": "有人同时修改了此项，请刷新后重试。",
    "The input is not valid.": "输入无效。", "must be an integer": "必须是整数",
    "must be at least {v}": "不能小于 {v}", "must not be below the minimum unit price": "不能低于最低单价",
    "must not exceed {v}": "不能超过 {v}", "must be between {a} and {b}": "必须在 {a} 到 {b} 之间",
    "must not be below the minimum withdrawal": "不能低于最低提现金额", "must be longer than 0": "必须大于 0",
    "must not exceed 30 days": "不能超过 30 天", "must not exceed 10 minutes (WeChat's limit for assisted steps)": "不能超过 10 分钟（微信辅助操作的限制）",
    "must leave the user something: below 100 %": "必须低于 100%，用户须能收到款项",
    "referral rewards would exceed the publishing fee at a unit price of {p}": "单价为 {p} 时邀请奖励将超过发布手续费",
    "unknown setting": "未知设置项", "A reason is required (at most 500 characters).": "必须填写理由（最多 500 字）。",
    "The amount is too large for one adjustment.": "单次调整金额过大。",
    "The password must be {a}–{b} characters long.": "密码长度须为 {a}–{b} 个字符。", "The password is too simple.": "密码过于简单。",
    "This username is taken.": "该用户名已被使用。", "3–32 characters: letters, digits, '_', '.', '-'.": "3–32 个字符：字母、数字、'_'、'.'、'-'。",
    "The role must be owner or operator.": "角色必须是所有者或操作员。",
    "{n} s": "{n} 秒", "{m} min {s} s": "{m} 分 {s} 秒", "{h} h {m} min": "{h} 小时 {m} 分", "{d} d {h} h": "{d} 天 {h} 小时",
}

# ?done=<key> after a successful POST → the message shown on the page it redirects to.
DONE = {
    "settings_saved": "Settings saved.",
    "nothing_changed": "Nothing changed.",
    "appeal_decided": "Appeal decided.",
    "payout_started": "Approved; the WeChat transfer has been created and waits for the user to confirm it.",
    "payout_paid": "Approved and paid.",
    "payout_failed": "Approved, but WeChat refused the transfer: the money went back to the user.",
    "approved_payout_later": "Approved; the WeChat transfer will be retried automatically.",
    "marked_paid": "Marked as paid.",
    "withdrawal_rejected": "Withdrawal rejected; the money went back to the user.",
    "banned": "Customer banned; their sessions have ended.",
    "unbanned": "Customer unbanned.",
    "adjusted": "Balance adjusted.",
    "operator_created": "Operator created.",
    "operator_updated": "Operator updated.",
    "password_set": "Password set; that operator's sessions have ended.",
}


def translator(lang: str):
    table = ZH if lang == "zh" else {}

    def t(key, **params) -> str:
        key = "" if key is None else str(key)
        text = table.get(key, key)
        if params:
            try:
                return text.format(**params)
            except (KeyError, IndexError, ValueError):
                return text
        return text

    return t


def duration(lang: str, seconds: int | None) -> str:
    t = translator(lang)
    s = max(0, int(seconds or 0))
    if s < 60:
        return t("{n} s", n=s)
    if s < 3600:
        return t("{m} min {s} s", m=s // 60, s=s % 60)
    if s < 86400:
        return t("{h} h {m} min", h=s // 3600, m=s % 3600 // 60)
    return t("{d} d {h} h", d=s // 86400, h=s % 86400 // 3600)


def _yuan(fen: str) -> str:
    from server.admin.units import yuan

    return yuan(int(fen))


# The settings validator's reasons (models/settings.py), in the units people type.
_REASONS: list[tuple[re.Pattern, str, callable]] = [
    (re.compile(r"^must be at least (\d+) fen$"), "must be at least {v}", lambda m: {"v": _yuan(m[1])}),
    (re.compile(r"^must not exceed (\d+) fen$"), "must not exceed {v}", lambda m: {"v": _yuan(m[1])}),
    (re.compile(r"^must be between (\d+) and 10000 basis points$"), "must be between {a} and {b}", lambda m: {"a": "0 %", "b": "100 %"}),
    (re.compile(r"^must be between (\d+) and (\d+)$"), "must be between {a} and {b}", lambda m: {"a": m[1], "b": m[2]}),
    (re.compile(r"^must be longer than 0 seconds$"), "must be longer than 0", lambda m: {}),
    (re.compile(r"^must leave the user something.*$"), "must leave the user something: below 100 %", lambda m: {}),
    (re.compile(r"^referral rewards would exceed the publishing fee at a unit price of (\d+) fen$"),
     "referral rewards would exceed the publishing fee at a unit price of {p}", lambda m: {"p": _yuan(m[1])}),
]


def reason(lang: str, text: str) -> str:
    t = translator(lang)
    for pattern, key, params in _REASONS:
        m = pattern.match(text or "")
        if m:
            return t(key, **params(m))
    return t(text)


# Domain messages that come with a field (InvalidInput) → English in people's units.
_INPUT_MESSAGES = {
    "amount_fen must be a non-zero whole number of fen.": "Must not be zero.",
    "amount_fen is too large for one adjustment.": "The amount is too large for one adjustment.",
    "A reason (1–500 characters) is required.": "A reason is required (at most 500 characters).",
    "A reason (1–255 characters) is required.": "A reason is required.",
    "A payment reference (1–128 characters) is required.": "The payment reference is required.",
    "note is required.": "A note is required: it is sent to the worker and kept in the audit log.",
}
_PASSWORD_LEN = re.compile(r"^The password must be (\d+)–(\d+) characters long\.$")


def domain_message(lang: str, exc: DomainError) -> str:
    t = translator(lang)
    details = getattr(exc, "details", {}) or {}
    status = details.get("status")
    code = getattr(exc, "code", "")
    if code == "already_decided":
        return t("Already decided by someone else (now: {status}).", status=t(status or "—"))
    if code == "invalid_transition":
        return t("This is not possible in the current state ({status}).", status=t(status or "—"))
    if code == "deadline_passed":
        return t("The time for this action has run out.")
    if code == "insufficient_balance":
        return t("The available balance is not enough.")
    if code in ("user_not_found",):
        return t("No such user.")
    if code.endswith("not_found"):
        return t("Not found.")
    if code == "conflict":
        return t("Someone else changed this at the same moment; reload and try again.")
    message = getattr(exc, "message", "") or str(exc)
    if message in _INPUT_MESSAGES:
        return t(_INPUT_MESSAGES[message])
    m = _PASSWORD_LEN.match(message)
    if m:
        return t("The password must be {a}–{b} characters long.", a=m[1], b=m[2])
    return t(message)
