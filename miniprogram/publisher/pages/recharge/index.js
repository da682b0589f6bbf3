// Recharge: pick an amount (presets or typed), pay with wx.requestPayment using the server's
// parameters, then wait for WeChat Pay's notification to reach the server (wallet.changed, or the
// recharge's status) and show the paid state. A retry after a failure reuses the request id, so
// a payment is never created twice.

const { ctx, toast, showError, listen, release, navigate } = require('../../shared/ui')
const { yuanText, parseYuan } = require('../../shared/money')
const { requestId } = require('../../shared/api')

const PRESETS = [5000, 10000, 20000, 50000, 100000].map(fen => ({ fen, text: yuanText(fen) }))
const POLL_MS = 1500
const polls = new WeakMap()

function requestPayment(payment) {
  return new Promise(resolve => {
    wx.requestPayment({
      timeStamp: payment.timeStamp,
      nonceStr: payment.nonceStr,
      package: payment.package,
      signType: /** @type {'RSA'} */ (payment.signType),
      paySign: payment.paySign,
      success: () => resolve('paid'),
      fail: res => resolve(/cancel/.test((res && res.errMsg) || '') ? 'cancelled' : 'failed'),
    })
  })
}

Component({
  data: { presets: PRESETS, amountFen: 10000, amountText: yuanText(10000), custom: '', phase: 'choose', balanceText: '', paidText: '', rechargeId: 0, requestId: '' },
  lifetimes: {
    detached() {
      clearTimeout(polls.get(this))
      release(this)
    },
  },
  methods: {
    onLoad() {
      this.setData({ requestId: requestId('r') })
      listen(this, ['wallet.changed'], e => {
        if (this.data.phase === 'waiting' && e.data && e.data.reason === 'recharge') this.check()
      })
      this.balance()
    },
    async balance() {
      try {
        await ctx().ready()
        const w = await ctx().api.get('/wallet')
        this.setData({ balanceText: yuanText(w.available_fen) })
      } catch (err) {
        this.setData({ balanceText: '—' })
      }
    },
    choosePreset(e) {
      const fen = Number(e.currentTarget.dataset.fen)
      this.setData({ amountFen: fen, amountText: yuanText(fen), custom: '', requestId: requestId('r') })
    },
    onCustom(e) {
      const fen = parseYuan(e.detail.value)
      this.setData({ custom: e.detail.value, amountFen: fen && fen > 0 ? fen : 0, amountText: fen ? yuanText(fen) : '', requestId: requestId('r') })
    },
    async pay() {
      if (!this.data.amountFen || this.data.phase !== 'choose') return
      this.setData({ phase: 'paying' })
      let recharge
      try {
        recharge = await ctx().api.post('/recharges', { amount_fen: this.data.amountFen, request_id: this.data.requestId })
      } catch (err) {
        this.setData({ phase: 'choose' })
        return showError(err)
      }
      const outcome = await requestPayment(recharge.payment)
      if (outcome !== 'paid') {
        this.setData({ phase: 'choose' })
        return toast(outcome === 'cancelled' ? '已取消支付' : '支付未完成，请重试')
      }
      this.setData({ phase: 'waiting', rechargeId: recharge.recharge_id })
      this.check()
    },
    /** Is the money in? Poll the recharge until WeChat Pay's notification has been applied. */
    async check() {
      clearTimeout(polls.get(this))
      try {
        const r = await ctx().api.get(`/recharges/${this.data.rechargeId}`)
        if (r.status === 'paid') {
          const w = await ctx().api.get('/wallet')
          this.setData({ phase: 'paid', paidText: yuanText(r.amount_fen), balanceText: yuanText(w.available_fen) })
          return
        }
      } catch (err) {
        /* weak network: keep waiting */
      }
      if (this.data.phase === 'waiting') polls.set(this, setTimeout(() => this.check(), POLL_MS))
    },
    again() {
      this.setData({ phase: 'choose', requestId: requestId('r') })
    },
    goPublish() {
      navigate('/pages/publish/index')
    },
  },
})
