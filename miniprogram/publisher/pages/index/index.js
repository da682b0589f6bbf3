// The publisher's home: balances, tasks running, orders waiting for review — all live. A shared
// invitation (scene) is bound by the login at launch (app.js).

const { ctx, listen, debounce, pageLifetimes, navigate, dataset, errorText } = require('../../shared/ui')
const { yuanText } = require('../../shared/money')
const { loadReviewQueue } = require('../../lib/review-queue')

Component({
  data: { state: 'loading', errorText: '', availableText: '', heldText: '', withdrawingText: '', runningCount: 0, reviewCount: 0, running: /** @type {any[]} */ ([]) },
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
        const [wallet, open, full] = await Promise.all([
          ctx().api.get('/wallet'),
          ctx().api.get('/tasks', { status: 'open', limit: 50 }),
          ctx().api.get('/tasks', { status: 'full', limit: 50 }),
        ])
        const running = open.items.concat(full.items)
        const held = running.reduce((sum, t) => sum + (t.held_fen || 0), 0)
        const count = (await loadReviewQueue(ctx().api)).length
        this.setData({
          state: 'ready',
          availableText: yuanText(wallet.available_fen),
          withdrawingText: yuanText(wallet.withdrawing_fen),
          heldText: yuanText(held),
          runningCount: running.length,
          reviewCount: count,
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

