// The review queue: every order waiting for my review with its proof, soonest deadline first,
// live as orders arrive. Approve here; rejecting (by an acceptance criterion, or a reason) opens the
// order. Below, the appeals I have not answered yet (回应 opens the order), with the answer deadline
// when an automatic rule set one.

const { ctx, toast, showError, confirm, listen, debounce, pageLifetimes, navigate, dataset, errorText } = require('../../shared/ui')
const { yuanText } = require('../../shared/money')
const { beijing } = require('../../shared/time')
const { loadWork } = require('../../lib/review-queue')
const { rejectionLines } = require('../../shared/views')

/** @param {import('../../../types/models').PublisherOrder} o */
function item(o) {
  return {
    id: o.id,
    title: (o.task && o.task.title) || `任务 #${o.task_id}`,
    priceText: yuanText(o.unit_price_fen),
    submittedText: beijing(o.submitted_at, { year: false }),
    deadline: o.deadline_at || o.review_deadline_at || '',
    proofText: o.proof_text || '',
    proofImage: o.proof_image || '',
    proofImageUrl: o.proof_image_url || '',
  }
}

/** @param {import('../../../types/models').PublisherOrder} o */
function appealItem(o) {
  const why = rejectionLines(o)
  return {
    id: o.id,
    title: (o.task && o.task.title) || `任务 #${o.task_id}`,
    priceText: yuanText(o.unit_price_fen),
    rejectText: why ? `${why.kind}：${why.text}` : '',
    appealText: o.appeal_reason || '',
    appealedText: beijing(o.appealed_at, { year: false }),
    answerDue: o.answer_due_at || '',
  }
}

Component({
  data: { state: 'loading', errorText: '', queue: /** @type {any[]} */ ([]), appeals: /** @type {any[]} */ ([]), more: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      listen(this, ['order.changed', 'order.taken', 'order.answered', 'reconnected'], () => debounce(this, 'load', 150, () => this.load()))
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
        const { review, appeals, more } = await loadWork(ctx().api, { appeals: true })
        this.setData({ queue: review.map(item), appeals: appeals.map(appealItem), more, state: review.length || appeals.length ? 'ready' : 'empty' })
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    async approve(e) {
      const id = dataset(e).id
      if (!(await confirm('通过审核', '通过后佣金将支付给接单方，不能撤回。', '通过'))) return
      try {
        await ctx().api.post(`/orders/${id}/approve`)
        toast('已通过', 'success')
      } catch (err) {
        showError(err)
      }
      this.load()
    },
    openReview(e) {
      navigate(`/pages/order/review?id=${dataset(e).id}`)
    },
  },
})
