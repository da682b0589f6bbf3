// The Chinese names of states and kinds the server sends as codes.

const ORDER_STATUS = {
  in_progress: '进行中',
  awaiting_review: '待审核',
  completed: '已完成',
  rejected: '已驳回',
  appealing: '申诉中',
  failed: '已失败',
  abandoned: '已放弃',
}

const TASK_STATUS = {
  open: '进行中',
  full: '已抢完',
  expired: '已过期',
  cancelled: '已取消',
  finished: '已结束',
  held: '审核中',
  refused: '未通过审核',
}

const WITHDRAWAL_STATUS = {
  pending: '待审核',
  paying: '打款中',
  paid: '已到账',
  rejected: '已驳回',
  failed: '打款失败',
}

const LEDGER_KIND = {
  recharge: '充值',
  publish: '发布任务',
  slot_refund: '未接名额退款',
  order_complete: '订单完成',
  order_fail: '订单失败退款',
  referral_settle: '邀请奖励',
  withdraw_request: '申请提现',
  withdraw_paid: '提现到账',
  withdraw_returned: '提现退回',
  adjustment: '人工调整',
}

const ACCOUNT = { available: '可用余额', withdrawing: '提现中' }

// The event that made an order final.
const FINISHED_BY = {
  approve: '发单方通过',
  review_timeout: '超时自动通过',
  accept_rejection: '接单方接受驳回',
  appeal_timeout: '申诉超时',
  arbitrate_worker: '平台仲裁：接单方胜诉',
  arbitrate_publisher: '平台仲裁：发单方胜诉',
  abandon: '接单方放弃',
  force_complete: '平台处理：订单完成',
  force_fail: '平台处理：订单失败',
}

function label(table, code) {
  return table[code] || '其他'
}

module.exports = { ORDER_STATUS, TASK_STATUS, WITHDRAWAL_STATUS, LEDGER_KIND, ACCOUNT, FINISHED_BY, label }
