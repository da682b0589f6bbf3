// Publish a task: title, instructions, an optional attachment (an uploaded image such as a QR code,
// a link or text), the unit price within the allowed range and the quantity. Before confirming,
// the person sees the fee per slot, the total q × (P + F) held from the balance, and the balance
// after. Optionally only workers with a minimum approval rate or completed orders may take it, and
// acceptance criteria (one a line: a rejection must name one of them, or say why in 10 characters).
// Confirming (the dialog's 发布 tap) also asks for subscription messages (taken, awaiting review, expired).

const { ctx, toast, showError, confirm, pageLifetimes, navigate, errorText } = require('../../shared/ui')
const { yuanText, parseYuan, basisPoints, percentText } = require('../../shared/money')
const { durationText } = require('../../shared/time')
const { requestId } = require('../../shared/api')
const { textLength } = require('../../shared/views')

// The server's limits on acceptance criteria (models/tasks.py CRITERIA_MAX, CRITERION_MAX).
const CRITERIA_MAX = 10
const CRITERION_MAX = 100

/**
 * The criteria typed one a line: [list, problem] — the problem in Chinese, '' when fine.
 * @returns {[string[], string]}
 */
function parseCriteria(input) {
  const list = String(input || '').split('\n').map(s => s.trim()).filter(Boolean)
  if (list.length > CRITERIA_MAX) return [list, `验收标准最多 ${CRITERIA_MAX} 条`]
  if (list.some(c => textLength(c) > CRITERION_MAX)) return [list, `每条验收标准最多 ${CRITERION_MAX} 个字`]
  if (new Set(list).size !== list.length) return [list, '验收标准不能重复']
  return [list, '']
}

const KINDS = [
  { key: '', text: '无' },
  { key: 'image', text: '图片' },
  { key: 'link', text: '链接' },
  { key: 'text', text: '文字' },
]

// Who may take the task (the worker's record): a minimum approval rate (basis points) and a minimum
// of completed orders; 0 = anybody.
const APPROVALS = [
  { bp: 0, text: '不限' },
  { bp: 8000, text: '80%' },
  { bp: 9000, text: '90%' },
  { bp: 9500, text: '95%' },
]

function chooseImage() {
  return new Promise((resolve, reject) => {
    wx.chooseMedia({ count: 1, mediaType: ['image'], sourceType: ['album', 'camera'], success: res => resolve(res.tempFiles[0].tempFilePath), fail: reject })
  })
}

Component({
  data: {
    kinds: KINDS, title: '', instructions: '', attachmentKind: '', attachment: '', imagePath: '', imageRef: '', uploading: false, progress: 0,
    priceInput: '', quantityInput: '1', priceHint: '', maxQuantity: 100, feeRateText: '', feeText: '—', totalText: '—', balanceText: '—', afterText: '—',
    short: false, problem: '', busy: false, requestId: '', availableFen: 0,
    takeWindowText: '', countdownText: '', reviewWindowText: '',
    approvals: APPROVALS, minApprovalBp: 0, minCompletedInput: '', criteriaInput: '', criteriaProblem: '',
  },
  lifetimes: pageLifetimes,
  methods: {
    chooseApproval(e) {
      this.setData({ minApprovalBp: Number(e.currentTarget.dataset.bp) || 0 })
    },
    onMinCompleted(e) {
      this.setData({ minCompletedInput: e.detail.value })
    },
    onLoad() {
      this.setData({ requestId: requestId('p') })
      this.load()
    },
    onShow() {
      this.loadBalance()
    },
    async load() {
      try {
        await ctx().ready()
        const config = await ctx().loadConfig(true)
        this.setData({
          priceHint: `${yuanText(config.min_unit_price_fen)} ~ ${yuanText(config.max_unit_price_fen)}`,
          maxQuantity: config.max_quantity,
          feeRateText: percentText(config.publish_fee_bp),
          takeWindowText: durationText(config.take_window_s),
          countdownText: durationText(config.countdown_s),
          reviewWindowText: durationText(config.review_window_s),
        })
        this.recompute()
      } catch (err) {
        this.setData({ problem: errorText(err) })
      }
    },
    async loadBalance() {
      try {
        await ctx().ready()
        const w = await ctx().api.get('/wallet')
        this.setData({ availableFen: w.available_fen, balanceText: yuanText(w.available_fen) })
        this.recompute()
      } catch (err) {
        /* the summary shows — until the balance is known */
      }
    },
    onTitle(e) {
      this.setData({ title: e.detail.value })
    },
    onInstructions(e) {
      this.setData({ instructions: e.detail.value })
    },
    onCriteria(e) {
      this.setData({ criteriaInput: e.detail.value, criteriaProblem: parseCriteria(e.detail.value)[1] })
    },
    onAttachment(e) {
      this.setData({ attachment: e.detail.value })
    },
    onPrice(e) {
      this.setData({ priceInput: e.detail.value })
      this.recompute()
    },
    onQuantity(e) {
      this.setData({ quantityInput: e.detail.value })
      this.recompute()
    },
    chooseKind(e) {
      this.setData({ attachmentKind: e.currentTarget.dataset.key, attachment: '', imagePath: '', imageRef: '' })
    },
    async pickImage() {
      let path
      try {
        path = await chooseImage()
      } catch (e) {
        return
      }
      this.setData({ imagePath: path, imageRef: '', uploading: true, progress: 0 })
      try {
        const up = await ctx().api.upload(path, p => this.setData({ progress: p }))
        this.setData({ imageRef: up.ref })
      } catch (err) {
        this.setData({ imagePath: '' })
        showError(err)
      } finally {
        this.setData({ uploading: false })
      }
    },
    /** The numbers the person confirms: fee per slot, total held, balance after; or what is wrong. */
    recompute() {
      const config = ctx().config
      const price = parseYuan(this.data.priceInput)
      const quantity = /^\d+$/.test(String(this.data.quantityInput)) ? Number(this.data.quantityInput) : 0
      let problem = ''
      if (!config) return { ok: false }
      if (this.data.priceInput && !price) problem = '请输入正确的单价'
      else if (price && (price < config.min_unit_price_fen || price > config.max_unit_price_fen)) problem = `单价须在 ${yuanText(config.min_unit_price_fen)} ~ ${yuanText(config.max_unit_price_fen)} 之间`
      else if (this.data.quantityInput !== '' && (quantity < 1 || quantity > config.max_quantity)) problem = `数量须在 1 ~ ${config.max_quantity} 之间`
      if (!price || !quantity || problem) {
        this.setData({ problem, feeText: '—', totalText: '—', afterText: '—', short: false })
        return { ok: false, problem }
      }
      const fee = basisPoints(price, config.publish_fee_bp)
      const total = quantity * (price + fee)
      const after = this.data.availableFen - total
      this.setData({ problem: after < 0 ? '余额不足，请先充值' : '', feeText: yuanText(fee), totalText: yuanText(total), afterText: yuanText(after), short: after < 0 })
      return { ok: after >= 0, price, quantity, fee, total, after }
    },
    async publish() {
      const title = this.data.title.trim()
      const instructions = this.data.instructions.trim()
      if (!title) return toast('请填写标题')
      if (!instructions) return toast('请填写任务说明')
      if (this.data.attachmentKind === 'image' && !this.data.imageRef) return toast('请先上传图片')
      if ((this.data.attachmentKind === 'link' || this.data.attachmentKind === 'text') && !this.data.attachment.trim()) return toast('请填写附件内容')
      if (this.data.attachmentKind === 'link' && !/^https?:\/\//.test(this.data.attachment.trim())) return toast('链接须以 http:// 或 https:// 开头')
      const [criteria, criteriaProblem] = parseCriteria(this.data.criteriaInput)
      if (criteriaProblem) return toast(criteriaProblem)
      const sum = this.recompute()
      if (!sum.ok) return toast(sum.problem || this.data.problem || '请填写单价和数量')
      // WeChat shows the subscription prompt only in answer to a tap: ask in the dialog's 发布 tap,
      // once the person has confirmed (one system dialog at a time; nothing asked when cancelled).
      let subscribed = /** @type {Promise<unknown>} */ (Promise.resolve(null))
      const ok = await confirm('确认发布', `${sum.quantity} 个名额 × (${yuanText(sum.price)} + 服务费 ${yuanText(sum.fee)}) = ${yuanText(sum.total)}，发布后余额 ${yuanText(sum.after)}。`, '发布', () => {
        subscribed = ctx().askSubscribe(['order_taken', 'order_awaiting_review', 'task_expired_refunded'])
      })
      if (!ok) return
      await subscribed // the prompt is answered before the publish's own toast and page change
      this.setData({ busy: true })
      /** @type {import('../../../types/client').RequestBody<'/tasks', 'post'>} */
      const body = { title, instructions, unit_price_fen: /** @type {number} */ (sum.price), quantity: /** @type {number} */ (sum.quantity), request_id: this.data.requestId }
      if (this.data.minApprovalBp) body.min_approval_bp = this.data.minApprovalBp
      const minCompleted = parseInt(this.data.minCompletedInput, 10)
      if (minCompleted > 0) body.min_completed_orders = minCompleted
      if (criteria.length) body.criteria = criteria
      if (this.data.attachmentKind) {
        body.attachment_kind = /** @type {'image' | 'link' | 'text'} */ (this.data.attachmentKind)
        body.attachment = this.data.attachmentKind === 'image' ? this.data.imageRef : this.data.attachment.trim()
      }
      try {
        const task = await ctx().api.post('/tasks', body)
        toast('发布成功', 'success')
        wx.redirectTo({ url: `/pages/task/detail?id=${task.id}` })
      } catch (err) {
        // A refusal (not a lost connection) ends this request: the next try is a new one.
        if (err && err.status > 0) this.setData({ requestId: requestId('p') })
        showError(err)
        this.loadBalance()
      } finally {
        this.setData({ busy: false })
      }
    },
    goRecharge() {
      navigate('/pages/recharge/index')
    },
  },
})
