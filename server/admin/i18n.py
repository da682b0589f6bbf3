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
    "Only the owner may change the rules and the prohibited terms.": "只有所有者可以修改申诉规则和禁止词。",
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
    "Image storage per user (MB)": "每个用户的图片存储空间（MB）",
    "Records: window (days)": "信誉记录：统计天数", "Records: minimum reviewed orders before rates are shown": "信誉记录：显示比率所需的最少已审核订单数",
    "Worker limits: window (days)": "接单限制：统计天数", "Worker limits: abandons that pause taking (0 = off)": "接单限制：暂停接单的放弃次数（0 = 关闭）",
    "Worker limits: lost appeals that pause taking (0 = off)": "接单限制：暂停接单的申诉失败次数（0 = 关闭）",
    "Compliance: a prohibited term holds the task for an operator (1) or refuses the publish (0)":
        "合规：命中违禁词时任务交人工审核（1）或直接拒绝发布（0）",
    "Referral rewards only from an invitee's second completed order (1 = on, 0 = off)":
        "邀请奖励从被邀请人第二笔完成的订单起计（1 = 开启，0 = 关闭）",
    "Record": "信誉记录", "new": "新用户", "Approval rate": "通过率", "Rejection rate": "驳回率", "Auto-approve rate": "自动通过率",
    "Appeals lost by the publisher": "发布者申诉败诉率", "Median review time": "审核时间中位数", "Orders (window)": "订单数（统计期内）",
    "Completed / failed / abandoned": "完成 / 失败 / 放弃", "Appeals won / lost": "申诉胜 / 负", "Limited until": "限制接单至",
    "Blocks made": "屏蔽的接单者", "Blocked by publishers": "被发布者屏蔽",
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
    "All orders of this worker": "该接单者的全部订单", "All tasks of this publisher": "该发单者的全部任务",
    "All orders of this task": "该任务的全部订单", "All {n} invitees": "全部 {n} 位被邀请人",
    "The first {n} orders are shown.": "仅显示最先接的 {n} 个订单。", "Invited by (name or #)": "邀请人（昵称或编号）",
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
    "Change my password": "修改我的密码", "Current password": "当前密码", "Repeat the new password": "再次输入新密码",
    "Your other sessions end; this one stays logged in.": "您的其他登录会话将结束，当前会话保持登录。",
    "The two new passwords differ.": "两次输入的新密码不一致。", "The current password is wrong.": "当前密码错误。",
    "The new password must differ from the current one.": "新密码不能与当前密码相同。",
    "Your password is changed; your other sessions have ended.": "密码已修改，您的其他登录会话已结束。",
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
    "own_password_changed": "Your password is changed; your other sessions have ended.",
}


# Tests set this to a set: every key a page asked for that its language has no text for goes in it
# (Chinese: any text not in ZH; English: a code-like key, e.g. "unit.yuan", not in EN).
MISSES: set[tuple[str, str]] | None = None
_CODE_LIKE = re.compile(r"^[a-z][a-z0-9]*([._][a-z0-9]+)+$")


def _note_miss(lang: str, key: str, table: dict) -> None:
    if MISSES is None or not key or key in table:
        return
    if lang == "zh" and re.search(r"[A-Za-z]", key):
        MISSES.add((lang, key))
    elif lang == "en" and _CODE_LIKE.match(key):
        MISSES.add((lang, key))


def translator(lang: str):
    table = ZH if lang == "zh" else EN

    def t(key, **params) -> str:
        key = "" if key is None else str(key)
        _note_miss(lang, key, table)
        text = table.get(key, key)
        if params:
            try:
                return text.format(**params)
            except (KeyError, IndexError, ValueError):
                return text
        return text

    t.lang = lang  # server/admin/wording.py speaks the page's language through it
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
    if lang == "zh" and message not in ZH and hasattr(exc, "text"):
        return exc.text("zh-CN")  # every domain error carries its own Chinese (models/errors.py)
    return t(message)


ZH.update({  # the reconciliation room (server/admin/reconciliation.py, issue 15)
    "Reconciliation": "对账", "{n} differences with WeChat Pay waiting": "{n} 条与微信支付的差异待处理",
    "Nothing is changed automatically: fix the money elsewhere if needed, then close the difference with a note.":
        "系统不会自动改动任何数据：如需更正资金请在别处操作（如手动调账），然后在此填写说明并关闭差异。",
    "Bill day": "账单日", "found": "发现于", "Our books": "我方账目", "WeChat Pay": "微信支付", "Ours": "我方记录",
    "WeChat reference": "微信单号", "Details": "详情", "Note": "说明", "Mark resolved": "标记为已处理",
    "No differences waiting.": "没有待处理的差异。", "Recent runs": "最近的对账", "Result": "结果",
    "Trade rows": "交易账单行数", "Fund rows": "资金账单行数", "New differences": "新差异", "Recently resolved": "最近处理",
    "difference_resolved": "差异已标记为已处理。",
    "payment_not_credited": "微信已收款但未入账", "credit_not_in_bill": "已入账但微信账单无此笔",
    "amount_mismatch": "金额不一致", "refund_not_recorded": "微信有退款但我方无记录",
    "payout_not_recorded": "微信已转账但我方未记为已打款", "payout_not_in_bill": "我方已打款但微信账单无此笔",
    "transfer_stuck": "转账长时间未完成", "run_clean": "无差异", "run_differences": "有差异",
    "run_waiting": "账单未出", "run_running": "进行中", "run_failed": "失败（稍后重试）",
    # a difference's details (models/reconciliation.py): the field, then the known values
    "detail.out_trade_no": "商户订单号", "detail.transaction_id": "微信支付单号", "detail.traded_at": "交易时间",
    "detail.out_refund_no": "商户退款单号", "detail.refunded_at": "退款时间", "detail.out_bill_no": "商户转账单号",
    "detail.transfer_bill_no": "微信转账单号", "detail.booked_at": "记账时间", "detail.finished_at": "完成时间",
    "detail.approved_at": "批准时间", "detail.our_status": "我方状态", "detail.what": "不符之处",
    "what.payment": "支付金额", "what.transfer": "转账金额", "what.paid_after_return": "提现已退回，微信又打款",
    "no such recharge": "无此充值", "no such withdrawal": "无此提现", "closed": "已关闭",
})


ZH.update({  # issue 13 (admin-a): settings in minutes + seconds, conflicts, adjustments, filters, dashboard
    "Seconds must be 0–59.": "秒数须为 0–59。", "{n} hours": "{n} 小时", "{n} minutes": "{n} 分钟", "minutes": "分钟",
    "seconds": "秒", "s": "秒", "unit.seconds": "秒", "You typed: {v}": "您填写的是：{v}",
    "Someone else changed the settings meanwhile. The form now shows their values; the fields marked differ from what you typed. Check and save again.":
        "在此期间有人修改了设置。表单已显示最新数值，标出的项与您填写的不同。请核对后重新保存。",
})
ZH.update({
    "An adjustment of {a} was already made to this customer at {at} by {by} ({r}). Is this a second one?":
        "{at} 已由 {by} 给该客户调整过 {a}（{r}）。这是第二笔吗？",
    "Yes, make a second adjustment": "是的，再调整一笔",
})
ZH.update({
    "“{v}” is not an ID (a whole number such as 123).": "“{v}”不是 ID（应为整数，如 123）。",
    "“{v}” is not a date (YYYY-MM-DD, e.g. 2026-03-31).": "“{v}”不是日期（格式 YYYY-MM-DD，如 2026-03-31）。",
    "“{v}” is not one of: {choices}.": "“{v}”不是以下之一：{choices}。", "“To” is before “From”.": "“到”早于“从”。",
    "These filters are not valid; nothing is listed until they are fixed:": "以下筛选条件无效，改正之前不显示列表：",
    "There is no such page in the admin panel.": "管理后台没有这个页面。",
    "This address is a form's: open the page the form is on.": "这是表单的提交地址，请打开表单所在的页面。",
})
ZH.update({"New password for {u}": "{u} 的新密码"})
ZH.update({  # ledger memos and audit details (server/admin/wording.py)
    "{n} referral rewards": "{n} 笔邀请奖励", "Merchant order {no}": "商户单号 {no}",
    "Refund of untaken slots: the take window ended": "未接名额退款：接单时限已到",
    "Refund of untaken slots: cancelled by the publisher": "未接名额退款：发单者取消",
    "Refund: abandoned after the take window": "退款：接单时限后被放弃",
    "Refund": "退款", "Paid to the worker": "付给接单者", "Worker inviter reward": "接单端邀请人奖励",
    "Publisher inviter reward": "发单端邀请人奖励", "Held": "托管", "Expected": "应付", "Slots refunded": "退款名额",
    "Journal entry": "记账凭证", "IP": "IP", "WeChat transaction": "微信支付单号", "Error": "错误", "Problems": "问题",
    "Source": "来源",
    "Minimum approval rate (basis points)": "最低通过率（基点）", "Minimum completed orders": "最少完成订单数",
    "Held by the compliance gate": "合规审核暂扣原因", "Criterion": "验收标准",
    "List exported": "导出的列表", "Filters": "筛选条件", "Rows": "行数", "Rows matching (the file was cut)": "符合条件的行数（文件已截断）",
    "Only the first {n} rows were exported, of {total}.": "仅导出前 {n} 行，共 {total} 行",
})


ZH.update({  # audit actions and values that had no Chinese (issue 13: no raw keys in either language)
    "action.operator.password_change": "修改自己的密码", "action.operator.throttled": "登录受限",
    "action.recharge.amount_mismatch": "充值金额不符", "action.recharge.transaction_id_reused": "微信单号重复使用",
    "action.withdrawal.return_held": "退回挂起的提现", "action.withdrawal.paid_by_hand": "挂起的提现已手动打款",
    "action.withdrawal.payout_held": "打款挂起待处理", "action.withdrawal.payout_retry": "重试打款",
    "action.withdrawal.payout_cancel": "取消打款", "action.withdrawal.bill_mismatch": "转账单不符",
    "action.withdrawal.notification_mismatch": "转账通知不符", "action.withdrawal.paid_after_return": "退回后又到账",
    "action.session.refresh_reused": "刷新令牌被重复使用（登录已全部失效）",
    "action.user.logout": "退出登录", "action.export.csv": "导出 CSV",
    "action.appeal_rule.update": "修改自动申诉规则", "action.appeal_rule.refuse_appeal": "自动规则：拒绝申诉",
    "action.compliance.term_add": "添加禁止词", "action.compliance.term_disable": "停用禁止词",
    "action.compliance.term_enable": "启用禁止词", "action.order.appeal_answer": "发单方答复申诉",
    "action.order.force_complete": "操作员强制完成", "action.order.force_fail": "操作员强制失败",
    "action.task.compliance_approve": "合规放行任务", "action.task.compliance_hold": "任务因合规待审",
    "action.task.compliance_refuse": "合规拒绝任务（退回托管）", "action.withdrawal.payout_requery": "重新查询打款",
    "action.worker.block": "拉黑接单方", "action.worker.unblock": "取消拉黑接单方",
    "action.reconciliation.clean": "对账无差异", "action.reconciliation.differences": "对账发现差异",
    "action.reconciliation.waiting": "对账单未出", "action.reconciliation.failed": "对账失败",
    "action.reconciliation.running": "对账进行中", "action.reconciliation.resolve": "差异已处理",
    "reconciliation": "对账", "reconciliation_difference": "对账差异", "escrow": "托管", "fees": "手续费",
    "referral_payable": "待结邀请奖励", "wechatpay": "微信支付", "payouts": "打款", "adjustments": "调账",
    "resolved": "已处理", "unit.duration": "秒",
})

# English for the code-like keys (Chinese is in ZH; plain English keys are their own English).
EN: dict[str, str] = {
    "in_progress": "in progress", "awaiting_review": "awaiting review", "referral_payable": "referral payable",
    "unit.yuan": "fen", "unit.percent": "basis points", "unit.minutes": "s", "unit.seconds": "s", "unit.duration": "s", "unit.count": "",
    "entry.recharge": "recharge", "entry.publish": "task published (held)", "entry.slot_refund": "untaken slots refunded",
    "entry.order_complete": "order completed", "entry.order_fail": "order failed (refund)", "entry.referral_settle": "referral rewards paid",
    "entry.withdraw_request": "withdrawal requested", "entry.withdraw_paid": "withdrawal paid", "entry.withdraw_returned": "withdrawal returned",
    "entry.adjustment": "manual adjustment",
    "event.approve": "approved by the publisher", "event.review_timeout": "auto-approved (review window ended)",
    "event.accept_rejection": "worker accepted the rejection", "event.appeal_timeout": "appeal window ended: failed",
    "event.arbitrate_worker": "arbitration: worker wins", "event.arbitrate_publisher": "arbitration: publisher wins",
    "event.abandon": "abandoned by the worker", "event.countdown_end": "countdown ended",
    "difference_resolved": "Difference marked as resolved.", "payment_not_credited": "paid at WeChat, not credited",
    "credit_not_in_bill": "credited, not in WeChat's bill", "amount_mismatch": "amounts differ",
    "refund_not_recorded": "refunded at WeChat, not recorded", "payout_not_recorded": "paid by WeChat, not marked paid",
    "payout_not_in_bill": "marked paid, not in WeChat's bill", "reconciliation_difference": "reconciliation difference", "transfer_stuck": "transfer not finishing",
    "run_clean": "no differences", "run_differences": "differences found", "run_waiting": "bill not ready",
    "run_running": "running", "run_failed": "failed (retried later)",
    "detail.out_trade_no": "out_trade_no", "detail.transaction_id": "transaction_id", "detail.traded_at": "traded at",
    "detail.out_refund_no": "out_refund_no", "detail.refunded_at": "refunded at", "detail.out_bill_no": "out_bill_no",
    "detail.transfer_bill_no": "transfer_bill_no", "detail.booked_at": "booked at", "detail.finished_at": "finished at",
    "detail.approved_at": "approved at", "detail.our_status": "our status", "detail.what": "what differs",
    "what.payment": "the paid amount", "what.transfer": "the transferred amount",
    "what.paid_after_return": "WeChat paid after we returned the money",
}
ZH.setdefault("event.countdown_end", "倒计时结束")
ZH.setdefault("refused", "已拒绝")  # a task the compliance gate refused (issue 14)
for _key, _zh in list(ZH.items()):  # audit actions: "action.order.take" → "order: take"
    if _key.startswith("action.") and _key not in EN:
        _noun, _, _verb = _key[len("action."):].partition(".")
        EN[_key] = f"{_noun.replace('_', ' ')}: {_verb.replace('_', ' ')}"
ZH.update({  # dashboard (server/admin/trends.py)
    "yesterday by now {v} ({c})": "昨日同期 {v}（{c}）", "compared with yesterday up to the same time": "与昨日同一时刻相比",
    "Recharges": "充值", "payments": "笔", "Withdrawals paid": "已打款提现", "New users": "新用户",
    "Scheduler jobs failing": "失败中的定时任务", "subscription messages given up": "订阅消息发送失败",
    "Last 7 days": "最近 7 天", "Tasks by state": "各状态任务数", "Subscription messages given up": "订阅消息发送失败（已放弃）",
    "Scheduler job failures (24 h)": "定时任务失败次数（24 小时）", "Scheduler jobs that failed": "失败过的定时任务",
    "Job": "任务名", "Failures (24 h)": "失败次数（24 小时）", "Last failure": "最近失败", "failing": "失败中",
    "recovered": "已恢复", "Message": "消息", "Orders completed": "完成订单",
    "Money in and out": "资金流入与流出", "New users and completed orders": "新用户与完成订单",
})
_JOBS = {"sweep": ("timers (deadlines)", "定时器（到期处理）"), "settle_referrals": ("referral settlement", "邀请奖励结算"),
         "ledger_audit": ("ledger audit", "账本核对"), "prune_outbox": ("outbox clean-up", "消息清理"),
         "wechat_subscriptions": ("WeChat subscription messages", "微信订阅消息发送"),
         "wechat_check_recharges": ("recharge check", "充值查单"), "wechat_check_payouts": ("payout check", "打款查单"),
         "reconcile": ("reconciliation", "对账"), "overdue_transfers": ("overdue transfers", "超时转账检查"),
         "heartbeat": ("scheduler heartbeat", "调度器心跳")}
_MESSAGES = {"appeal_decided": ("appeal decided", "申诉结果通知"), "order_approved": ("order approved", "订单通过通知"),
             "order_awaiting_review": ("order to review", "待审核通知"), "order_taken": ("order taken", "接单通知"),
             "task_expired_refunded": ("task expired, refunded", "任务到期退款通知")}
for _prefix, _table in (("job.", _JOBS), ("message.", _MESSAGES)):
    for _k, (_en, _zh) in _table.items():
        EN[_prefix + _k], ZH[_prefix + _k] = _en, _zh

# The compliance room's own texts (issue 14); never re-word another room's.
from server.admin import compliance_zh as _compliance_zh  # noqa: E402

for _key, _zh in _compliance_zh.ZH.items():
    ZH.setdefault(_key, _zh)
for _key, (_en, _zh) in _compliance_zh.CODES.items():
    EN.setdefault(_key, _en)
    ZH.setdefault(_key, _zh)
DONE.update(_compliance_zh.DONE)
