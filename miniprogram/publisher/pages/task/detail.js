// One of my tasks: its funnel, its orders (tap one to review it; the newest 200 come with the task,
// older ones a page at a time at the bottom), and cancelling the untaken slots (refunded at once;
// running orders carry on). Live as slots are taken and orders move.

const { ctx, toast, showError, confirm, listen, debounce, pageLifetimes, navigate, dataset, errorText } = require('../../shared/ui')
const { taskCard, orderCard } = require('../../shared/views')
const { yuanText } = require('../../shared/money')

Component({
  data: { state: 'loading', errorText: '', id: 0, task: /** @type {any} */ ({}), quantity: 0, feeText: '', heldText: '', funnel: {}, orders: /** @type {any[]} */ ([]), nextCursor: /** @type {string | null} */ (null), loadingMore: false, canCancel: false, busy: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad(query) {
      this.setData({ id: Number(query.id) })
      listen(this, ['order.taken', 'order.changed', 'task.expired', 'task.cancelled'], e => {
        if (e.data && e.data.task_id === this.data.id) debounce(this, 'load', 100, () => this.load())
      })
      listen(this, ['reconnected'], () => this.load())
      this.load()
    },
    onShow() {
      if (this.data.state === 'ready') this.load()
    },
    onPullDownRefresh() {
      this.load().then(() => wx.stopPullDownRefresh())
    },
    async load() {
      try {
        await ctx().ready()
        const d = await ctx().api.get(`/tasks/${this.data.id}`)
        const t = d.task
        this.setData({
          state: 'ready',
          task: taskCard(t),
          quantity: t.quantity,
          feeText: yuanText(t.fee_fen),
          heldText: yuanText(t.held_fen),
          funnel: t.funnel,
          orders: d.orders.map(orderCard),
          nextCursor: d.orders_next_cursor,
          canCancel: t.status === 'open' && t.slots_untaken > 0,
        })
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    onReachBottom() {
      this.more()
    },
    async more() {
      if (!this.data.nextCursor || this.data.loadingMore) return
      this.setData({ loadingMore: true })
      try {
        const page = await ctx().api.get(`/tasks/${this.data.id}/orders`, { cursor: this.data.nextCursor, limit: 50 })
        const known = new Set(this.data.orders.map(o => o.id))
        const fresh = page.items.map(orderCard).filter(o => !known.has(o.id))
        this.setData({ orders: this.data.orders.concat(fresh), nextCursor: page.next_cursor })
      } catch (err) {
        showError(err)
      } finally {
        this.setData({ loadingMore: false })
      }
    },
    async cancel() {
      const t = this.data.task
      const ok = await confirm('取消未接名额', `剩余 ${t.slotsUntaken} 个未接名额将退回余额；已接的订单照常进行。`, '取消名额')
      if (!ok) return
      this.setData({ busy: true })
      try {
        await ctx().api.post(`/tasks/${this.data.id}/cancel`)
        toast('已取消并退款', 'success')
        await this.load()
      } catch (err) {
        showError(err)
        this.load()
      } finally {
        this.setData({ busy: false })
      }
    },
    openOrder(e) {
      navigate(`/pages/order/review?id=${dataset(e).id}`)
    },
  },
})
