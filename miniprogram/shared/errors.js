// Every error a person can meet, in Chinese. The server's `code` is stable; its `message` may be
// English (or, once the catalog speaks zh-CN, Chinese), so screens never show it directly: they
// show the text below, or the generic line for a code this version of the app does not know.

const MESSAGES = {
  // 400
  bad_request: '请求有误，请更新小程序后重试',
  invalid_input: '填写的内容有误，请检查后再试',
  insufficient_balance: '余额不足，请先充值',
  price_out_of_range: '单价不在允许的范围内',
  withdrawal_out_of_range: '提现金额不在允许的范围内',
  daily_withdrawal_cap: '已超过今日提现额度，请明天再试',
  real_name_required: '到账 ¥2000.00 及以上需填写收款人微信实名',
  invalid_login_code: '登录已失效，正在重新登录',
  invalid_invite_code: '邀请码无效',
  upload_rejected: '只能上传 5MB 以内的 PNG、JPEG、GIF 或 WebP 图片',
  amount_mismatch: '金额不一致，请重新发起',
  recharge_not_pending: '该充值单已处理',
  // 401
  unauthorized: '登录已失效，请重新登录',
  token_expired: '登录已过期，请重新登录',
  session_ended: '登录已失效，请重新登录',
  refresh_token_invalid: '登录已失效，请重新登录',
  // 403
  wrong_end: '账号类型不符，请使用正确的小程序',
  user_banned: '账号已被封禁',
  own_task: '不能接自己发布的任务',
  forbidden: '没有权限进行此操作',
  login_refused: '微信拒绝了本次登录，请稍后再试',
  blocked_by_publisher: '该发布者已屏蔽你，不能接TA的任务',
  not_qualified: '你的通过率或完成单数未达到该任务的要求',
  worker_limited: '近期放弃订单或申诉失败次数过多，暂时不能接单',
  // 404
  not_found: '内容不存在或已删除',
  task_not_found: '任务不存在或已下架',
  order_not_found: '订单不存在',
  withdrawal_not_found: '提现记录不存在',
  recharge_not_found: '充值记录不存在',
  user_not_found: '用户不存在',
  block_not_found: '没有屏蔽这位接单者',
  worker_not_found: '只能屏蔽为你做过任务的接单者',
  image_link_expired: '图片链接已过期，请刷新页面',
  image_link_invalid: '图片链接无效，请刷新页面',
  method_not_allowed: '请求有误，请更新小程序后重试',
  request_timeout: '请求超时，请重试',
  payload_too_large: '提交的内容太大',
  unsupported_media_type: '请求有误，请更新小程序后重试',
  // 409
  slot_taken: '手慢了，名额已被抢完',
  slots_being_taken: '剩余名额正在被先到的人领取，请稍后再试',
  task_closed: '任务已结束，不能再接',
  already_took_task: '你已经接过这个任务',
  too_many_orders_in_progress: '你有未完成的订单，请先完成再接新任务',
  invalid_transition: '订单状态已变化，请刷新后再试',
  deadline_passed: '已超过截止时间',
  already_decided: '已经处理过了',
  idempotency_conflict: '请求重复且内容不一致，请重新提交',
  conflict: '操作冲突，请刷新后再试',
  // the compliance gate and appeal rules (issue 14)
  prohibited_content: '任务内容包含平台禁止的内容，请修改后再发布',
  appeals_paused: '你最近的申诉多次未成功，暂时不能申诉',
  task_not_held: '任务不在待审核状态',
  // 413 / 429 / 5xx
  upload_too_large: '图片超过 5MB，请换一张',
  upload_quota_exceeded: '你的图片存储空间已满，暂时不能再上传',
  rate_limited: '操作太频繁，请稍后再试',
  wechat_unavailable: '微信服务暂时不可用，请稍后再试',
  internal_error: '服务器开小差了，请稍后再试',
  unavailable: '服务暂时不可用，请稍后再试',
  server_busy: '服务器繁忙，正在重新连接',
  // raised by the app itself
  network_error: '网络不给力，请检查网络后重试',
  timeout: '请求超时，请重试',
  server_error: '服务器开小差了，请稍后再试',
  payment_cancelled: '已取消支付',
  payment_failed: '支付未完成',
  transfer_cancelled: '已取消收款确认',
  upload_failed: '图片上传失败，请重试',
}

const GENERIC = '操作失败，请稍后再试'

const { beijing } = require('./time')

// When the error's details carry the numbers (docs/errors.json), say them — money in yuan, times
// in Beijing time.
const yuan = fen => `¥${Math.floor(fen / 100)}.${String(fen % 100).padStart(2, '0')}`
const isInt = v => typeof v === 'number' && Number.isInteger(v)
const DETAILED = {
  price_out_of_range: d => (isInt(d.min_fen) && isInt(d.max_fen) ? `单价须在 ${yuan(d.min_fen)} ~ ${yuan(d.max_fen)} 之间` : ''),
  withdrawal_out_of_range: d => (isInt(d.min_fen) && isInt(d.max_fen) ? `提现金额须在 ${yuan(d.min_fen)} ~ ${yuan(d.max_fen)} 之间` : ''),
  daily_withdrawal_cap: d => (isInt(d.cap_fen) ? `已超过今日提现额度 ${yuan(d.cap_fen)}，请明天再试` : ''),
  real_name_required: d => (isInt(d.threshold_fen) ? `到账 ${yuan(d.threshold_fen)} 及以上需填写收款人微信实名` : ''),
  too_many_orders_in_progress: d => (isInt(d.limit) ? `你有未完成的订单，最多同时进行 ${d.limit} 单，请先完成再接新任务` : ''),
  rate_limited: d => (isInt(d.retry_after_s) ? `操作太频繁，请 ${d.retry_after_s} 秒后再试` : ''),
  not_qualified: d => {
    const parts = []
    if (isInt(d.min_approval_bp) && d.min_approval_bp > 0) parts.push(`通过率不低于 ${d.min_approval_bp / 100}%`)
    if (isInt(d.min_completed_orders) && d.min_completed_orders > 0) parts.push(`已完成不少于 ${d.min_completed_orders} 单`)
    return parts.length ? `该任务要求${parts.join('、')}` : ''
  },
  appeals_paused: d => {
    const until = beijing(d.until)
    if (!until) return ''
    return isInt(d.streak) ? `你最近 ${d.streak} 次申诉均未成功，${until}（北京时间）之后才能再次申诉` : `申诉已暂停，${until}（北京时间）之后才能再次申诉`
  },
  prohibited_content: d => (typeof d.term === 'string' && typeof d.category_zh === 'string'
    ? `任务内容包含平台禁止的“${d.term}”（${d.category_zh}），请修改后再发布` : ''),
  worker_limited: d => {
    const why = d.reason === 'appeals_lost' ? '申诉失败' : d.reason === 'abandons' ? '放弃订单' : ''
    if (!why || !isInt(d.count) || !isInt(d.window_days) || typeof d.limited_until_beijing !== 'string') return ''
    return `近 ${d.window_days} 天内${why} ${d.count} 次，暂停接单至 ${d.limited_until_beijing}`
  },
}

/**
 * The Chinese text for an error: an ApiError, an object with a `code`, or a bare code. A code this
 * version of the app does not know shows the server's own message when it is Chinese (the API
 * answers in zh-CN), never an English one.
 */
function errorText(err) {
  const code = typeof err === 'string' ? err : err && err.code
  const details = err && typeof err === 'object' && err.details
  if (code && details && DETAILED[code]) {
    const text = DETAILED[code](details)
    if (text) return text
  }
  if (code && MESSAGES[code]) return MESSAGES[code]
  if (err && typeof err === 'object' && typeof err.serverMessage === 'string' && /[\u4e00-\u9fa5]/.test(err.serverMessage) && !/[A-Za-z]{3,}/.test(err.serverMessage)) {
    return err.serverMessage
  }
  if (err && typeof err === 'object' && err.status >= 500) return MESSAGES.server_error
  return GENERIC
}

class ApiError extends Error {
  constructor(code, status, details, serverMessage) {
    super(code)
    this.code = code
    this.status = status
    this.details = details || {}
    this.serverMessage = serverMessage || ''
    this.text = errorText(this)
  }
}

module.exports = { MESSAGES, GENERIC, errorText, ApiError }
