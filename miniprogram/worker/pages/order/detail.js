// My order: its countdown against server time, submitting proof (text + an image chosen with
// wx.chooseMedia and uploaded with progress), abandoning with a confirmation, and after a
// rejection why (the acceptance criterion it fails, or 其他 + the reason), the appeal countdown and
// the appeal (with evidence) or accepting it; then the whole exchange (appeal-exchange): my appeal,
// the publisher's answer or when it is due, and the decision.

const { ctx, toast, showError, confirm, listen, debounce, pageLifetimes, errorText } = require('../../shared/ui')
const { yuanText } = require('../../shared/money')
const L = require('../../shared/labels')
const { beijing } = require('../../shared/time')
const { criteriaItems, readableNote } = require('../../shared/views')

const DEADLINE_LABEL = {
  in_progress: '提交截止',
  awaiting_review: '审核截止',
  rejected: '申诉截止',
}

const HINT = {
  in_progress: '请在倒计时结束前完成任务并提交凭证；超时将自动提交审核。',
  awaiting_review: '已提交，等待发单方审核；超时未审核将自动通过。',
  rejected: '发单方驳回了你的提交。你可以在截止前申诉，或接受驳回。',
  appealing: '申诉已提交，等待平台仲裁；发单方可以回应一次。',
  completed: '',
  failed: '',
  abandoned: '你已放弃此订单。',
}

/** @param {import('../../../types/models').Order} o */
function resultText(o) {
  if (o.status === 'completed') return `订单已完成，佣金 ${yuanText(o.unit_price_fen)} 已入账（${L.label(L.FINISHED_BY, o.finished_by)}）`
  if (o.status === 'failed') return `订单失败（${L.label(L.FINISHED_BY, o.finished_by)}）${o.decision_note ? '：' + readableNote(o.decision_note) : ''}`
  return ''
}

function chooseImage() {
  return new Promise((resolve, reject) => {
    wx.chooseMedia({
      count: 1,
      mediaType: ['image'],
      sourceType: ['album', 'camera'],
      sizeType: ['compressed'],
      success: res => resolve(res.tempFiles[0].tempFilePath),
      fail: reject,
    })
  })
}

Component({
  data: {
    state: 'loading', errorText: '', id: 0, status: '', statusText: '', title: '', priceText: '', deadline: '', deadlineLabel: '', hint: '',
    instructions: '', attachmentKind: '', attachment: '', attachmentUrl: '',
    proofText: '', proofPath: '', proofRef: '', uploading: false, progress: 0, busy: false,
    submitted: false, givenProofText: '', givenProofImage: '', givenProofUrl: '', criteria: /** @type {any[]} */ ([]),
    appealReason: '', evidencePath: '', evidenceRef: '', appealDeadlineText: '', appealPausedText: '', resultText: '', order: /** @type {any} */ (null),
  },
  lifetimes: pageLifetimes,
  methods: {
    onLoad(query) {
      this.setData({ id: Number(query.id) })
      listen(this, ['order.changed', 'order.answered'], e => {
        if (e.data && e.data.order_id === this.data.id) debounce(this, 'load', 100, () => this.load())
      })
      listen(this, ['reconnected'], () => this.load())
      this.load()
    },
    onShow() {
      if (this.data.state === 'ready') this.load()
    },
    async load() {
      try {
        await ctx().ready()
        this.show(await ctx().api.get(`/orders/${this.data.id}`))
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    /** @param {import('../../../types/models').Order} o */
    show(o) {
      const task = o.task || { title: '', instructions: '', attachment_kind: null, attachment: null, attachment_url: null, criteria: null }
      this.setData({
        state: 'ready',
        status: o.status,
        statusText: L.label(L.ORDER_STATUS, o.status),
        title: task.title || '',
        priceText: yuanText(o.unit_price_fen),
        deadline: o.deadline_at || '',
        deadlineLabel: DEADLINE_LABEL[o.status] || '',
        hint: HINT[o.status] || '',
        instructions: task.instructions || '',
        attachmentKind: task.attachment_kind || '',
        attachment: task.attachment || '',
        attachmentUrl: task.attachment_url || '',
        submitted: !!o.submitted_at,
        givenProofText: o.proof_text || '',
        givenProofImage: o.proof_image || '',
        givenProofUrl: o.proof_image_url || '',
        criteria: criteriaItems(task.criteria),
        appealDeadlineText: o.status === 'rejected' ? beijing(o.appeal_deadline_at) : '',
        resultText: resultText(o),
        order: o,
      })
      wx.setNavigationBarTitle({ title: L.label(L.ORDER_STATUS, o.status) })
    },
    /** The countdown reached zero: the server applies the timer within a second; show what it did. */
    onExpire() {
      debounce(this, 'load', 1200, () => this.load())
    },
    onProofText(e) {
      this.setData({ proofText: e.detail.value })
    },
    onAppealReason(e) {
      this.setData({ appealReason: e.detail.value })
    },
    copyAttachment() {
      wx.setClipboardData({ data: this.data.attachment, success: () => toast('已复制') })
    },
    async uploadChosen(field, pathField) {
      let path
      try {
        path = await chooseImage()
      } catch (e) {
        return // the person closed the picker
      }
      this.setData({ [pathField]: path, [field]: '', uploading: true, progress: 0 })
      try {
        const up = await ctx().api.upload(path, p => this.setData({ progress: p }))
        this.setData({ [field]: up.ref })
      } catch (err) {
        this.setData({ [pathField]: '' })
        showError(err)
      } finally {
        this.setData({ uploading: false })
      }
    },
    pickProof() {
      return this.uploadChosen('proofRef', 'proofPath')
    },
    pickEvidence() {
      return this.uploadChosen('evidenceRef', 'evidencePath')
    },
    /**
     * @param {'submit' | 'abandon' | 'accept-rejection'} path
     * @param {import('../../../types/client').RequestBody<'/orders/{order_id}/submit', 'post'> | {}} body
     * @param {string} doneText
     */
    async act(path, body, doneText) {
      this.setData({ busy: true })
      try {
        this.show(await ctx().api.post(`/orders/${this.data.id}/${path}`, body))
        toast(doneText, 'success')
      } catch (err) {
        showError(err)
        this.load()
      } finally {
        this.setData({ busy: false })
      }
    },
    submit() {
      /** @type {import('../../../types/client').RequestBody<'/orders/{order_id}/submit', 'post'>} */
      const body = {}
      if (this.data.proofText.trim()) body.proof_text = this.data.proofText.trim()
      if (this.data.proofRef) body.proof_image = this.data.proofRef
      return this.act('submit', body, '已提交')
    },
    async abandon() {
      if (!(await confirm('放弃订单', '放弃后不能再接这个任务，确定放弃吗？', '放弃'))) return
      return this.act('abandon', {}, '已放弃')
    },
    async appeal() {
      if (this.data.appealPausedText) return toast(this.data.appealPausedText)
      const reason = this.data.appealReason.trim()
      if (!reason) return toast('请填写申诉理由')
      /** @type {import('../../../types/client').RequestBody<'/orders/{order_id}/appeal', 'post'>} */
      const body = { reason }
      if (this.data.evidenceRef) body.evidence = this.data.evidenceRef
      this.setData({ busy: true })
      try {
        this.show(await ctx().api.post(`/orders/${this.data.id}/appeal`, body))
        toast('申诉已提交', 'success')
      } catch (err) {
        // An automatic rule paused my appeals: say until when, and leave accepting possible.
        if (err && err.code === 'appeals_paused') this.setData({ appealPausedText: errorText(err) })
        else {
          showError(err)
          this.load()
        }
      } finally {
        this.setData({ busy: false })
      }
    },
    async acceptRejection() {
      if (!(await confirm('接受驳回', '接受后订单失败，不能再申诉。确定接受吗？', '接受'))) return
      return this.act('accept-rejection', {}, '已接受')
    },
  },
})
