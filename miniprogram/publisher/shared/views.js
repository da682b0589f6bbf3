// API objects -> what a screen shows: yuan, Beijing time and Chinese labels, computed once in JS
// so templates only print.

const { yuanText, signedYuan } = require('./money')
const { beijing, durationText } = require('./time')
const L = require('./labels')

/** @param {import('../../types/models').Task | import('../../types/models').PublisherTask} t */
function taskCard(t) {
  return {
    id: t.id,
    title: t.title,
    priceText: yuanText(t.unit_price_fen),
    slotsText: `剩余 ${t.slots_untaken}/${t.quantity} 个名额`,
    status: t.status,
    statusText: L.label(L.TASK_STATUS, t.status),
    takeDeadline: t.status === 'open' ? t.take_deadline_at || '' : '',
    createdText: beijing(t.created_at, { year: false }),
    slotsUntaken: t.slots_untaken,
    recordText: 'publisher_record' in t ? publisherRecordText(t.publisher_record) : '',
    restrictText: restrictText(t),
  }
}

const percent = bp => `${Math.round(bp / 10) / 10}%`

/** A publisher's record in one line for a task card: 新发布者, or the rates a worker weighs. */
function publisherRecordText(rec) {
  if (!rec) return ''
  if (rec.new) return '新发布者'
  const parts = []
  if (rec.approval_bp != null) parts.push(`通过率 ${percent(rec.approval_bp)}`)
  if (rec.auto_approve_bp) parts.push(`超时自动通过 ${percent(rec.auto_approve_bp)}`)
  if (rec.appeals_lost_bp != null) parts.push(`申诉败诉 ${percent(rec.appeals_lost_bp)}`)
  return parts.join(' · ')
}

/** The publisher's record as lines (label, value) for the task page. */
function publisherRecordLines(rec) {
  if (!rec) return []
  const pct = bp => (bp == null ? '—' : percent(bp))
  const lines = [
    { label: '统计', value: `近 ${rec.window_days} 天 ${rec.tasks} 个任务、${rec.orders} 单` },
  ]
  if (rec.new) return lines.concat([{ label: '信誉', value: `新发布者（已审核不足 ${rec.min_sample} 单）` }])
  return lines.concat([
    { label: '通过率', value: pct(rec.approval_bp) },
    { label: '驳回率', value: pct(rec.rejection_bp) },
    { label: '超时自动通过', value: pct(rec.auto_approve_bp) },
    { label: '驳回被申诉', value: pct(rec.appeal_bp) },
    { label: '申诉败诉率', value: pct(rec.appeals_lost_bp) },
    { label: '审核用时中位数', value: rec.median_review_s == null ? '—' : durationText(rec.median_review_s) },
  ])
}

/** The task's minimums for takers, or '' when anybody may take it. */
function restrictText(t) {
  const parts = []
  if (t.min_approval_bp) parts.push(`通过率≥${percent(t.min_approval_bp)}`)
  if (t.min_completed_orders) parts.push(`完成≥${t.min_completed_orders}单`)
  return parts.length ? `要求${parts.join('，')}` : ''
}

/** A worker's record in one line for the publisher: 新接单者, or rates and abandons. */
function workerRecordText(rec) {
  if (!rec) return ''
  const limited = rec.limited ? '（接单受限）' : ''
  if (rec.new) return `新接单者 · 已完成 ${rec.completed} 单${limited}`
  const parts = [`通过率 ${percent(rec.approval_bp)}`, `已完成 ${rec.completed} 单`]
  if (rec.abandon_bp != null) parts.push(`放弃率 ${percent(rec.abandon_bp)}`)
  parts.push(`申诉 胜${rec.appeals_won}/负${rec.appeals_lost}`)
  return parts.join(' · ') + limited
}

/**
 * My own record as a worker (GET /worker/record), as lines (label, value) for 我的: what publishers
 * see before they review me, and the automatic limit on my takes with until when (Beijing time).
 * @param {import('../../types/models').WorkerRecord} rec
 */
function workerRecordLines(rec) {
  if (!rec) return []
  const pct = bp => (bp == null ? '—' : percent(bp))
  const lines = [{ label: '统计', value: `近 ${rec.window_days} 天接单 ${rec.orders} 单` }]
  if (rec.new) lines.push({ label: '信誉', value: `新接单者（完成与失败不足 ${rec.min_sample} 单）` })
  else lines.push({ label: '通过率', value: pct(rec.approval_bp) }, { label: '放弃率', value: pct(rec.abandon_bp) })
  lines.push(
    { label: '已完成 / 已失败 / 已放弃', value: `${rec.completed} / ${rec.failed} / ${rec.abandoned}` },
    { label: '申诉', value: `胜 ${rec.appeals_won} · 负 ${rec.appeals_lost}` },
  )
  const lim = rec.limited
  if (lim) {
    const why = lim.reason === 'appeals_lost' ? '申诉失败' : '放弃订单'
    lines.push({ label: '接单受限', value: `近 ${lim.window_days} 天${why} ${lim.count} 次（上限 ${lim.max} 次），${beijing(lim.until)}（北京时间）后恢复` })
  }
  return lines
}

/** @param {import('../../types/models').Order | (import('../../types/models').TaskOrder & {task?: undefined})} o */
function orderCard(o) {
  return {
    id: o.id,
    taskId: o.task_id,
    title: (o.task && o.task.title) || `任务 #${o.task_id}`,
    status: o.status,
    statusText: L.label(L.ORDER_STATUS, o.status),
    priceText: yuanText(o.unit_price_fen),
    deadline: o.deadline_at || '',
    takenText: beijing(o.taken_at, { year: false }),
  }
}

/** @param {import('../../types/models').Posting} p */
function postingRow(p) {
  return {
    id: p.id,
    kindText: L.label(L.LEDGER_KIND, p.kind),
    accountText: L.label(L.ACCOUNT, p.account),
    amountText: signedYuan(p.amount_fen),
    positive: p.amount_fen > 0,
    balanceText: yuanText(p.balance_after_fen),
    atText: beijing(p.at),
    refText: p.order_id ? `订单 #${p.order_id}` : p.task_id ? `任务 #${p.task_id}` : '',
  }
}

/** @param {import('../../types/models').Withdrawal} w */
function withdrawalRow(w) {
  return {
    id: w.id,
    amountText: yuanText(w.amount_fen),
    feeText: yuanText(w.fee_fen),
    payoutText: yuanText(w.payout_fen),
    status: w.status,
    statusText: L.label(L.WITHDRAWAL_STATUS, w.status),
    createdText: beijing(w.created_at),
    finishedText: beijing(w.finished_at),
    reason: w.reason || '',
    needsConfirm: !!w.transfer,
    transfer: w.transfer || null, // the wx.requestMerchantTransfer arguments while WeChat waits
  }
}

// --- rejections and the appeal exchange (issue 14 §2) ----------------------------------------------

/** Characters as the server counts them (code points: an emoji is one, not two UTF-16 units). */
const textLength = s => Array.from(s || '').length

// The server's rule for "other" (models/orders.py OTHER_REASON_MIN), mirrored so the form says it first.
const OTHER_REASON_MIN = 10
const REASON_MAX = 500

/**
 * What is wrong with a rejection before it is sent, in Chinese ('' when it may be sent), exactly as
 * the server decides it: a task with criteria is rejected by one of them (the reason then optional)
 * or as "other" with a reason of at least 10 characters; a task without criteria needs a reason.
 * @param {string[] | null} criteria the task's acceptance criteria
 * @param {number | 'other' | null} choice the criterion's index, 'other', or null (nothing chosen)
 * @param {string} reason
 */
function rejectProblem(criteria, choice, reason) {
  const text = (reason || '').trim()
  if (textLength(text) > REASON_MAX) return `驳回原因最多 ${REASON_MAX} 个字`
  if (!criteria || !criteria.length) return text ? '' : '请填写驳回原因'
  // Nothing chosen is "other" to the server: a reason of 10 characters is enough there too.
  if (choice === null || choice === undefined) return textLength(text) >= OTHER_REASON_MIN ? '' : '请选择凭证未达到的验收标准，或选择“其他”并说明原因'
  if (choice === 'other') return textLength(text) >= OTHER_REASON_MIN ? '' : `选择“其他”时，请用至少 ${OTHER_REASON_MIN} 个字说明原因`
  return Number.isInteger(choice) && choice >= 0 && choice < criteria.length ? '' : '请选择任务的一条验收标准'
}

/** The request body of that rejection: {criterion, reason?} or {reason}. */
function rejectBody(criteria, choice, reason) {
  const text = (reason || '').trim()
  /** @type {import('../../types/client').RequestBody<'/api/v1/publisher/orders/{order_id}/reject', 'post'>} */
  const body = {}
  if (criteria && criteria.length && Number.isInteger(choice)) body.criterion = choice
  if (text) body.reason = text
  return body
}

/**
 * A decision note as people read it: an automatic rule's note names the rule's code in brackets
 * (notes written before 2026-12-01 read "自动规则：发单方未在期限内回应申诉（publisher_loss_rate）") — the code is for
 * operators, so the apps leave it out.
 */
function readableNote(note) {
  return (note || '').replace(/\s*[（(][a-z][a-z0-9_]*[）)]/g, '').trim()
}

/** A task's acceptance criteria for a list on screen: [{i, n, text}] (index, number from 1). */
function criteriaItems(criteria) {
  return (criteria || []).map((text, i) => ({ i, n: i + 1, text }))
}

/** Why an order was rejected: the criterion it fails (the reason adds detail), or 其他 + the reason. */
function rejectionLines(o) {
  if (!o || (!o.reject_reason && !o.reject_criterion)) return null
  if (o.reject_criterion) {
    const detail = o.reject_reason && o.reject_reason !== o.reject_criterion ? o.reject_reason : ''
    return { kind: '未达到验收标准', text: o.reject_criterion, detail }
  }
  // null = "other" when the task declared criteria; a task without criteria just has a reason.
  const declared = !!(o.task && o.task.criteria && o.task.criteria.length)
  return { kind: declared ? '其他' : '原因', text: o.reject_reason || '', detail: '' }
}

/**
 * The whole exchange of a rejected order, as both sides read it: the rejection, the appeal, the
 * publisher's answer (or when it is due) and the decision.
 * @param {import('../../types/models').Order} o
 * @param {'worker' | 'publisher'} viewer
 */
function appealExchange(o, viewer) {
  const me = viewer === 'worker'
  const rejection = rejectionLines(o)
  const appealed = !!o.appealed_at || !!o.appeal_reason
  const final = o.status === 'completed' || o.status === 'failed'
  const answered = !!o.answered_at || !!o.answer_text
  const answerDue = o.status === 'appealing' && !answered && o.answer_due_at ? o.answer_due_at : ''
  let decision = null
  if (final && appealed && o.finished_by) {
    const workerWon = o.status === 'completed'
    decision = {
      title: L.label(L.FINISHED_BY, o.finished_by),
      outcome: workerWon ? (me ? '你胜诉：佣金已入账' : '接单方胜诉：佣金已支付给接单方') : me ? '发单方胜诉：订单失败' : '你胜诉：费用已退回你的余额',
      note: readableNote(o.decision_note),
      atText: beijing(o.finished_at),
    }
  }
  return {
    rejection,
    rejectedAtText: beijing(o.rejected_at),
    appealed,
    appealTitle: me ? '我的申诉' : '接单方的申诉',
    appealReason: o.appeal_reason || '',
    appealEvidence: o.appeal_evidence || '',
    appealEvidenceUrl: o.appeal_evidence_url || '',
    appealedAtText: beijing(o.appealed_at),
    answered,
    answerTitle: me ? '发单方的回应' : '我的回应',
    answerText: o.answer_text || '',
    answerImage: o.answer_image || '',
    answerImageUrl: o.answer_image_url || '',
    answeredAtText: beijing(o.answered_at),
    waitingAnswer: o.status === 'appealing' && !answered,
    answerDue,
    answerDueText: beijing(answerDue),
    answerDueHint: answerDue ? (me ? '发单方逾期未回应，申诉将自动判你胜诉' : '逾期未回应，申诉将自动判接单方胜诉') : '',
    decision,
  }
}

module.exports = { workerRecordLines, readableNote, criteriaItems, textLength, OTHER_REASON_MIN, rejectProblem, rejectBody, rejectionLines, appealExchange, taskCard, orderCard, postingRow, withdrawalRow, publisherRecordText, publisherRecordLines, restrictText, workerRecordText }
