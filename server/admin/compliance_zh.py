"""The compliance room's texts in Chinese (server/admin/compliance.py), installed into the panel's
`i18n.ZH` and `i18n.DONE` by `server/admin/i18n.py` (kept apart so that room's edits and this one's
never touch the same lines)."""

ZH = {
    "Compliance": "合规", "Held tasks": "待审任务", "{n} tasks held, oldest first": "{n} 个任务待审，最早的在前",
    "Why it was held": "暂停原因", "held": "暂停于", "Approve into the hall": "通过，进入任务大厅",
    "Refuse and refund": "拒绝并退款", "Reason (sent to the publisher)": "原因（发送给发单方）",
    "No tasks held.": "没有待审任务。", "Prohibited terms": "禁用词", "Category": "类别", "Term": "词语",
    "Shipped": "内置", "On": "启用", "Off": "停用", "Enable": "启用", "Disable": "停用", "Add term": "添加禁用词",
    "Automatic appeal rules": "自动申诉规则", "Enabled": "启用", "Save rule": "保存规则", "Version": "版本",
    "Recent automatic decisions": "最近的自动决定", "Rule": "规则", "Outcome": "结果", "Order": "订单",
    "Criterion not met": "未达到的验收标准", "Other (no declared criterion)": "其他（非声明的验收标准）",
    "Answer of the publisher": "发单方回应", "No answer yet.": "尚未回应。",
    "An automatic rule decides for the worker at": "若未回应，自动规则将于以下时间判接单方胜",
    "Task approved into the hall.": "任务已通过，进入任务大厅。", "Task refused; its escrow went back to the publisher.": "任务已拒绝，托管资金已退回发单方。",
    "Term added.": "禁用词已添加。", "Term updated.": "禁用词已更新。", "Rule saved.": "规则已保存。",
    "Hold a task that matches a prohibited term for an operator (off: refuse the publish)": "命中禁用词的任务暂停待审（关闭：直接拒绝发布）",
    "Referral rewards only after the invitee has completed a first order": "被邀请人完成首单后才给邀请人奖励",
    "Save switches": "保存开关",
}

# The room's code-like words, in both languages: term categories, the rules, their parameters and
# outcomes, and the parts of a held task's reason (models/compliance.py hold_reason).
CODES = {  # key: (English, Chinese)
    "category.assisted_registration": ("assisted registration / unblocking / scan verification", "辅助注册/解封/扫码验证"),
    "category.paid_votes": ("paid votes / vote rigging", "有偿投票/刷票"),
    "category.induced_sharing": ("induced sharing / following", "诱导分享/关注"),
    "category.gambling": ("gambling", "赌博"), "category.adult": ("adult / vulgar", "色情低俗"),
    "category.investment": ("investment schemes / pyramid selling", "投资理财/传销"), "category.other": ("other", "其他"),
    "publisher_loss_rate": ("publisher losing often: must answer appeals in time", "发单方败诉率过高：须在期限内回应"),
    "worker_losing_streak": ("worker losing in a row: appeals paused", "接单方连续败诉：暂停申诉"),
    "loss_rate_bp": ("losing rate threshold (basis points)", "败诉率阈值（基点）"),
    "window_days": ("counting window (days)", "统计窗口（天）"), "min_appeals": ("minimum appeals", "最少申诉数"),
    "grace_s": ("time to answer (seconds)", "回应期限（秒）"), "streak": ("losses in a row", "连续败诉次数"),
    "cooldown_s": ("pause (seconds)", "暂停时长（秒）"),
    "appeal_rule": ("appeal rule", "自动申诉规则"), "compliance_term": ("prohibited term", "禁用词"),
    "worker_wins": ("worker wins", "接单方胜"), "appeal_refused": ("appeal refused", "拒绝申诉"),
    "field.title": ("title", "标题"), "field.instructions": ("instructions", "说明"), "field.attachment": ("attachment", "附件"),
    "field.criteria": ("acceptance criteria", "验收标准"),
    "check.text": ("WeChat's check of the text", "微信文本内容检测"), "check.image": ("WeChat's check of the image", "微信图片内容检测"),
    "verdict.risky": ("risky", "违规"), "verdict.review": ("needs review", "疑似，需人工复审"),
    "verdict.unchecked": ("could not be checked", "未能检测"), "verdict.pass": ("passed", "通过"),
    "Prohibited term “{term}” ({category}) in the {field}": ("Prohibited term “{term}” ({category}) in the {field}",
                                                           "{field}中含禁用词“{term}”（{category}）"),
    "{check}: {verdict} (label {label})": ("{check}: {verdict} (label {label})", "{check}：{verdict}（标签 {label}）"),
}

DONE = {
    "held_task_approved": "Task approved into the hall.", "held_task_refused": "Task refused; its escrow went back to the publisher.",
    "term_added": "Term added.", "term_changed": "Term updated.", "rule_saved": "Rule saved.",
}
