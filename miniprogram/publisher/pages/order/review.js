// Review one order: the worker's proof, the review countdown (after it the order is approved
// automatically), approve, or reject saying why — the task's acceptance criterion the proof fails,
// or 其他 with a reason of at least 10 characters (checked here as the server checks it); then the
// whole exchange (appeal-exchange), my one answer to an appeal (text + image) before it is due,
// and the decision.

const { ctx, toast, showError, confirm, listen, debounce, pageLifetimes, errorText } = require('../../shared/ui')
const { yuanText } = require('../../shared/money')
const L = require('../../shared/labels')
const { workerRecordText, readableNote, criteriaItems, rejectProblem, rejectBody, textLength, OTHER_REASON_MIN } = require('../../shared/views')
const { beijing } = require('../../shared/time')

function chooseImage() {
  return new Promise((resolve, reject) => {
    wx.chooseMedia({ count: 1, mediaType: ['image'], sourceType: ['album', 'camera'], sizeType: ['compressed'], success: res => resolve(res.tempFiles[0].tempFilePath), fail: reject })
  })
}

/** A field's reason from an invalid_input (in Chinese: the client asks in zh-CN), else ''. */
function fieldError(err, field) {
  const fields = err && err.code === 'invalid_input' && err.details && err.details.fields
  const text = fields && typeof fields[field] === 'string' ? fields[field] : ''
  return /[\u4e00-\u9fa5]/.test(text) ? text : ''
}

/** Why an answer was refused, in Chinese. */
function answerErrorText(err, status) {
  if (err && err.code === 'invalid_transition') {
    const now = (err.details && err.details.status) || status
    return now === 'appealing' ? '你已回应过，或回应期限已过' : `申诉已不能回应（订单${L.label(L.ORDER_STATUS, now)}）`
  }
  return errorText(err)
}

const DEADLINE_LABEL = { in_progress: '接单方提交截止', awaiting_review: '审核截止（超时自动通过）', rejected: '接单方申诉截止' }

/** @param {import('../../../types/models').Order} o */
function resultText(o) {
  if (o.status === 'completed') return `订单已完成（${L.label(L.FINISHED_BY, o.finished_by)}），佣金 ${yuanText(o.unit_price_fen)} 已支付给接单方`
  if (o.status === 'failed') return `订单失败（${L.label(L.FINISHED_BY, o.finished_by)}），费用已退回你的余额${o.decision_note ? '。平台说明：' + readableNote(o.decision_note) : ''}`
  if (o.status === 'appealing') return o.answered_at ? '接单方已申诉，你已回应，等待平台仲裁' : '接单方已申诉，等待平台仲裁'
  if (o.status === 'abandoned') return '接单方已放弃此订单'
  return ''
}

Component({
  data: {
    state: 'loading', errorText: '', id: 0, title: '', status: '', statusText: '', priceText: '', deadline: '', deadlineLabel: '', submitted: false,
    proofText: '', proofImage: '', proofImageUrl: '', resultText: '', reason: '', busy: false,
    workerRecordText: '', blockReason: '', blocked: false, order: /** @type {any} */ (null),
    criteria: /** @type {any[]} */ ([]), choice: /** @type {number | 'other' | null} */ (null), reasonCount: '', rejectError: '', otherMin: OTHER_REASON_MIN,
    canAnswer: false, answerDueText: '', answerText: '', answerPath: '', answerRef: '', uploading: false, progress: 0, answerError: '',
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
    async load() {
      try {
        await ctx().ready()
        this.show(await ctx().api.get(`/orders/${this.data.id}`))
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    /** @param {import('../../../types/models').PublisherOrder} o */
    show(o) {
      this.setData({
        state: 'ready',
        title: (o.task && o.task.title) || '',
        status: o.status,
        statusText: L.label(L.ORDER_STATUS, o.status),
        priceText: yuanText(o.unit_price_fen),
        deadline: o.deadline_at || '',
        deadlineLabel: DEADLINE_LABEL[o.status] || '',
        submitted: !!o.submitted_at,
        proofText: o.proof_text || '',
        proofImage: o.proof_image || '',
        proofImageUrl: o.proof_image_url || '',
        resultText: resultText(o),
        workerRecordText: workerRecordText(o.worker_record),
        criteria: criteriaItems(o.task && o.task.criteria),
        order: o,
        canAnswer: o.status === 'appealing' && !o.answered_at && (!o.answer_due_at || ctx().clock.remainingMs(o.answer_due_at) > 0),
        answerDueText: o.answer_due_at ? beijing(o.answer_due_at) : '',
      })
      this.recountReason()
    },
    onBlockReason(e) {
      this.setData({ blockReason: e.detail.value })
    },
    /** Block the worker of this order: my tasks leave their hall (GET/DELETE /blocks undo it). */
    async block() {
      const reason = this.data.blockReason.trim()
      if (!reason) return toast('请填写屏蔽原因')
      if (!(await confirm('屏蔽接单者', '屏蔽后 TA 将看不到、也不能再接你的任务，进行中的订单不受影响。', '屏蔽'))) return
      this.setData({ busy: true })
      try {
        const b = await ctx().api.post('/blocks', { order_id: this.data.id, reason })
        // Blocked before: the first block and its reason stand (the server answers it, replayed).
        this.setData({ blocked: true, blockedBefore: b && b.replayed ? b.reason : '' })
        toast(b && b.replayed ? '此前已屏蔽' : '已屏蔽', 'success')
      } catch (err) {
        showError(err)
      } finally {
        this.setData({ busy: false })
      }
    },
    onExpire() {
      debounce(this, 'load', 1200, () => this.load())
    },
    onReason(e) {
      this.setData({ reason: e.detail.value, rejectError: '' })
      this.recountReason()
    },
    /** Choose the criterion the proof fails (its index), or 其他. */
    chooseCriterion(e) {
      const key = e.currentTarget.dataset.key
      this.setData({ choice: key === 'other' ? 'other' : Number(key), rejectError: '' })
      this.recountReason()
    },
    /** "已输入 n 字" while 其他 needs its 10 characters. */
    recountReason() {
      const n = textLength(this.data.reason.trim())
      this.setData({ reasonCount: this.data.choice === 'other' && this.data.criteria.length ? `已输入 ${n} 字，至少 ${OTHER_REASON_MIN} 字` : '' })
    },
    /**
     * @param {'approve'} path
     * @param {object} body
     * @param {string} doneText
     */
    async decide(path, body, doneText) {
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
    async approve() {
      if (!(await confirm('通过审核', '通过后佣金将支付给接单方，不能撤回。', '通过'))) return
      return this.decide('approve', {}, '已通过')
    },
    async reject() {
      const { choice, reason } = this.data
      const criteria = this.data.criteria.map(c => c.text)
      const problem = rejectProblem(criteria, choice, reason)
      if (problem) {
        this.setData({ rejectError: problem })
        return toast(problem)
      }
      const why = Number.isInteger(choice) ? `未达到验收标准：${criteria[/** @type {number} */ (choice)]}` : `${criteria.length ? '其他' : '原因'}：${reason.trim()}`
      if (!(await confirm('驳回订单', `${why}\n接单方可以在申诉期内申诉，由平台仲裁。确定驳回吗？`, '驳回'))) return
      this.setData({ busy: true })
      try {
        this.show(await ctx().api.post(`/orders/${this.data.id}/reject`, rejectBody(criteria, choice, reason)))
        toast('已驳回', 'success')
      } catch (err) {
        // The server's reason for a field (a criterion that no longer exists, a reason too short).
        const text = fieldError(err, 'criterion') || fieldError(err, 'reason') || errorText(err)
        this.setData({ rejectError: err && err.code === 'invalid_input' ? text : '' })
        toast(text)
        if (!(err && err.code === 'invalid_input')) this.load()
      } finally {
        this.setData({ busy: false })
      }
    },
    onAnswerText(e) {
      this.setData({ answerText: e.detail.value, answerError: '' })
    },
    /** The answer's image, uploaded at once with its progress (the ref goes with the answer). */
    async pickAnswerImage() {
      let path
      try {
        path = await chooseImage()
      } catch (e) {
        return // the person closed the picker
      }
      this.setData({ answerPath: path, answerRef: '', uploading: true, progress: 0 })
      try {
        const up = await ctx().api.upload(path, p => this.setData({ progress: p }))
        this.setData({ answerRef: up.ref })
      } catch (err) {
        this.setData({ answerPath: '' })
        showError(err)
      } finally {
        this.setData({ uploading: false })
      }
    },
    /** Answer the appeal, once: the worker and the operator see it beside the appeal. */
    async answer() {
      const text = this.data.answerText.trim()
      const problem = !text ? '请填写回应内容' : textLength(text) > 500 ? '回应最多 500 个字' : ''
      if (problem) {
        this.setData({ answerError: problem })
        return toast(problem)
      }
      if (this.data.answerPath && !this.data.answerRef) return toast('图片还在上传，请稍候')
      if (!(await confirm('回应申诉', '回应只能提交一次，提交后不能修改。确定提交吗？', '提交'))) return
      /** @type {import('../../../types/client').RequestBody<'/orders/{order_id}/answer', 'post'>} */
      const body = { text }
      if (this.data.answerRef) body.image = this.data.answerRef
      this.setData({ busy: true })
      try {
        this.show(await ctx().api.post(`/orders/${this.data.id}/answer`, body))
        this.setData({ answerText: '', answerPath: '', answerRef: '' })
        toast('已回应', 'success')
      } catch (err) {
        const message = fieldError(err, 'text') || fieldError(err, 'image') || answerErrorText(err, this.data.status)
        this.setData({ answerError: message })
        toast(message)
        this.load()
      } finally {
        this.setData({ busy: false })
      }
    },
  },
})
