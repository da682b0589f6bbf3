// Wallet (both apps): available and withdrawing balances, totals, and a withdrawal whose minimum
// and fee are shown before the person confirms. When WeChat needs the user to confirm the
// transfer, wx.requestMerchantTransfer is called with the server's arguments. WeChat pays ¥2000 or
// more (amount less the fee) only to the payee's real name: the form asks for it from that amount.

const { ctx, toast, showError, confirm, listen, debounce, pageLifetimes, navigate, errorText } = require('../../shared/ui')
const { yuanText, parseYuan, basisPoints, percentText } = require('../../shared/money')
const { requestId } = require('../../shared/api')
const { confirmTransfer } = require('../../shared/transfer')

// The payout (A − W) from which WeChat's merchant transfer needs the payee's real name (server:
// models/withdrawals.py REAL_NAME_REQUIRED_FEN; its real_name_required error says the same).
const REAL_NAME_FROM_FEN = 200000

/** @param {import('../../../types/models').Wallet} w */
function walletView(w) {
  return {
    availableFen: w.available_fen,
    availableText: yuanText(w.available_fen),
    withdrawingText: yuanText(w.withdrawing_fen),
    earnedText: yuanText(w.total_earned_fen),
    referralText: yuanText(w.referral_earned_fen),
    rechargedText: yuanText(w.total_recharged_fen),
    spentText: yuanText(w.total_spent_fen),
  }
}

/** @param {import('../../../types/models').Config | null} config */
function rulesOf(config) {
  if (!config) return { minText: '', rulesText: '' }
  const parts = [`最低提现 ${yuanText(config.min_withdraw_fen)}`, `手续费 ${percentText(config.withdraw_fee_bp)}`]
  if (config.daily_withdraw_cap_fen) parts.push(`每日上限 ${yuanText(config.daily_withdraw_cap_fen)}`)
  return { minText: yuanText(config.min_withdraw_fen), rulesText: parts.join('，') + '，审核通过后到账' }
}

Component({
  data: {
    end: '',
    state: 'loading',
    errorText: '',
    wallet: { availableFen: 0, availableText: '', withdrawingText: '', earnedText: '', referralText: '', rechargedText: '', spentText: '' },
    amountInput: '',
    previewText: '',
    needsName: false,
    realName: '',
    minText: '',
    rulesText: '',
    busy: false,
    requestId: '',
  },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      this.setData({ end: ctx().end, requestId: requestId('w') })
      listen(this, ['wallet.changed', 'withdrawal.changed', 'reconnected'], () => debounce(this, 'load', 150, () => this.load()))
    },
    onShow() {
      this.load()
    },
    onPullDownRefresh() {
      this.load().then(() => wx.stopPullDownRefresh())
    },
    async load() {
      if (this.data.state !== 'ready') this.setData({ state: 'loading' })
      try {
        await ctx().ready()
        const [wallet, config] = await Promise.all([ctx().api.get('/wallet'), ctx().loadConfig().catch(() => null)])
        this.setData(Object.assign({ state: 'ready', wallet: walletView(wallet) }, rulesOf(config)))
        this.preview()
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    onAmount(e) {
      this.setData({ amountInput: e.detail.value })
      this.preview()
    },
    onRealName(e) {
      this.setData({ realName: e.detail.value })
    },
    /** What the person will receive: the amount less the fee, shown before confirming. */
    preview() {
      const config = ctx().config
      const fen = parseYuan(this.data.amountInput)
      if (!fen || !config) {
        this.setData({ previewText: '', needsName: false })
        return
      }
      const fee = basisPoints(fen, config.withdraw_fee_bp)
      this.setData({ previewText: `手续费 ${yuanText(fee)}，预计到账 ${yuanText(fen - fee)}`, needsName: fen - fee >= REAL_NAME_FROM_FEN })
    },
    async withdraw() {
      const config = ctx().config
      const fen = parseYuan(this.data.amountInput)
      if (!fen) return toast('请输入正确的金额')
      if (config && fen < config.min_withdraw_fen) return toast(`最低提现 ${yuanText(config.min_withdraw_fen)}`)
      if (fen > this.data.wallet.availableFen) return toast('可用余额不足')
      const fee = config ? basisPoints(fen, config.withdraw_fee_bp) : 0
      const needsName = fen - fee >= REAL_NAME_FROM_FEN
      const realName = this.data.realName.trim()
      if (needsName && !realName) {
        this.setData({ needsName: true })
        return toast('到账 ¥2000.00 及以上请填写收款人真实姓名')
      }
      // The payout's outcome is asked for in the dialog's confirm tap (WeChat shows the prompt only in
      // answer to a tap): one system dialog at a time, nothing asked when cancelled.
      let subscribed = /** @type {Promise<unknown>} */ (Promise.resolve(null))
      const ok = await confirm('确认提现', `提现 ${yuanText(fen)}，手续费 ${yuanText(fee)}，预计到账 ${yuanText(fen - fee)}。审核通过后打款到微信零钱。`, '确定', () => {
        subscribed = ctx().askSubscribe(['withdrawal_paid', 'withdrawal_rejected', 'withdrawal_failed'])
      })
      if (!ok) return
      await subscribed // answered before the withdrawal (and WeChat's own transfer confirmation)
      this.setData({ busy: true })
      try {
        /** @type {import('../../../types/client').RequestBody<'/withdrawals', 'post'>} */
        const body = { amount_fen: fen, request_id: this.data.requestId }
        if (needsName) body.real_name = realName
        const w = await ctx().api.post('/withdrawals', body)
        // A new key for the next withdrawal; a retry after a network error above reuses the old one.
        // The name is not kept on the phone once it is sent.
        this.setData({ amountInput: '', previewText: '', needsName: false, realName: '', requestId: requestId('w') })
        if (w.transfer) await confirmTransfer(w)
        else toast('已提交，等待审核')
        await this.load()
      } catch (err) {
        if (err && err.status > 0) this.setData({ requestId: requestId('w') })
        if (err && err.code === 'real_name_required') this.setData({ needsName: true })
        showError(err)
      } finally {
        this.setData({ busy: false })
      }
    },
    goRecharge() {
      navigate('/pages/recharge/index')
    },
    goLedger() {
      navigate('/pages/ledger/index')
    },
    goWithdrawals() {
      navigate('/pages/withdrawals/index')
    },
  },
})
