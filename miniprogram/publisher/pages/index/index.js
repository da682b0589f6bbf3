// The publisher's home: balances, tasks running, orders waiting for review — all live. A shared
// invitation (scene) is bound by the login at launch (app.js).

const { ctx, listen, debounce, pageLifetimes, navigate, dataset, errorText } = require('../../shared/ui')
const { yuanText } = require('../../shared/money')

Component({
  data: { state: 'loading', errorText: '', availableText: '', heldText: '', withdrawingText: '', runningCount: 0, reviewCount: 0, appealsCount: 0, running: /** @type {any[]} */ ([]) },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      listen(this, ['wallet.changed', 'task.published', 'task.expired', 'task.cancelled', 'order.taken', 'order.changed', 'reconnected'], () =>
        debounce(this, 'load', 150, () => this.load())
      )
    },
    onShow() {
      this.load()
    },
    onPullDownRefresh() {
      this.load().then(() => wx.stopPullDownRefresh())
    },
    async load() {
      try {
        await ctx().ready()
        // The totals come from the server over all my tasks; the list shows the newest running ones.
        const [wallet, overview, open, full] = await Promise.all([
          ctx().api.get('/wallet'),
          ctx().api.get('/overview'),
          ctx().api.get('/tasks', { status: 'open', limit: 5 }),
          ctx().api.get('/tasks', { status: 'full', limit: 5 }),
        ])
        const running = open.items.concat(full.items).sort((a, b) => b.id - a.id)
        this.setData({
          state: 'ready',
          availableText: yuanText(wallet.available_fen),
          withdrawingText: yuanText(wallet.withdrawing_fen),
          heldText: yuanText(overview.held_fen),
          runningCount: overview.running_tasks,
          reviewCount: overview.awaiting_review,
          appealsCount: overview.appeals_to_answer,
          running: running.slice(0, 5).map(t => ({ id: t.id, title: t.title, priceText: yuanText(t.unit_price_fen), slotsUntaken: t.slots_untaken, quantity: t.quantity, awaiting: t.funnel.awaiting_review, takeDeadline: t.status === 'open' ? t.take_deadline_at : '' })),
        })
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    goRecharge() {
      navigate('/pages/recharge/index')
    },
    goPublish() {
      navigate('/pages/publish/index')
    },
    goTasks() {
      navigate('/pages/tasks/index')
    },
    goReview() {
      navigate('/pages/review/index')
    },
    goWallet() {
      navigate('/pages/wallet/index')
    },
    goInvite() {
      navigate('/pages/invite/index')
    },
    goBlocks() {
      navigate('/pages/blocks/index')
    },
    openTask(e) {
      navigate(`/pages/task/detail?id=${dataset(e).id}`)
    },
  },
})

