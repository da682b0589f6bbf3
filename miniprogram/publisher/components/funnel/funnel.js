// A task's funnel: how many slots were taken and where each order stands, and refunded slots.
const STEPS = [
  ['taken', '已接单'],
  ['in_progress', '进行中'],
  ['awaiting_review', '待审核'],
  ['completed', '已完成'],
  ['rejected', '已驳回'],
  ['appealing', '申诉中'],
  ['failed', '已失败'],
  ['abandoned', '已放弃'],
  ['refunded_slots', '已退款名额'],
]

Component({
  properties: { funnel: { type: Object, value: {} } },
  data: { steps: /** @type {any[]} */ ([]) },
  observers: {
    funnel(f) {
      const funnel = f || {}
      this.setData({ steps: STEPS.map(([key, name]) => ({ key, name, count: funnel[key] || 0 })) })
    },
  },
})
