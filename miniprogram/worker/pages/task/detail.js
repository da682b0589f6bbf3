// One task of the hall: instructions, the attachment (an image — long-press scans a QR code — or
// a link / text to copy), the publisher's record and the task's minimums, and the one-click take,
// which also asks for subscription messages.

const { ctx, toast, showError, pageLifetimes, listen, errorText } = require('../../shared/ui')
const { taskCard, publisherRecordLines, criteriaItems } = require('../../shared/views')
const { durationText } = require('../../shared/time')

Component({
  data: { state: 'loading', errorText: '', id: 0, task: {}, instructions: '', attachmentKind: '', attachment: '', attachmentUrl: '', countdownText: '', canTake: false, taking: false, recordLines: /** @type {any[]} */ ([]), criteria: /** @type {any[]} */ ([]) },
  lifetimes: pageLifetimes,
  methods: {
    onLoad(query) {
      this.setData({ id: Number(query.id) })
      listen(this, ['hall.task_changed', 'hall.task_removed'], e => {
        if (e.data && e.data.task_id === this.data.id) this.load()
      })
      this.load()
    },
    async load() {
      try {
        await ctx().ready()
        const t = await ctx().api.get(`/tasks/${this.data.id}`)
        this.setData({
          state: 'ready',
          task: taskCard(t),
          recordLines: publisherRecordLines(t.publisher_record),
          instructions: t.instructions,
          criteria: criteriaItems(t.criteria),
          attachmentKind: t.attachment_kind || '',
          attachment: t.attachment || '',
          attachmentUrl: t.attachment_url || '',
          countdownText: durationText(t.countdown_s),
          canTake: t.status === 'open' && t.slots_untaken > 0 && ctx().clock.remainingMs(t.take_deadline_at) > 0,
        })
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    copyAttachment() {
      wx.setClipboardData({ data: this.data.attachment, success: () => toast('已复制') })
    },
    async take() {
      if (this.data.taking) return
      // WeChat shows the subscription prompt only in answer to a tap: ask now, take at once.
      ctx().askSubscribe(['order_approved', 'order_rejected', 'appeal_decided'])
      this.setData({ taking: true })
      try {
        const order = await ctx().api.post(`/tasks/${this.data.id}/take`)
        toast('接单成功', 'success')
        wx.redirectTo({ url: `/pages/order/detail?id=${order.id}` })
      } catch (err) {
        showError(err)
        const final = ['slot_taken', 'task_closed', 'blocked_by_publisher', 'not_qualified', 'worker_limited']
        if (err && final.includes(err.code)) this.setData({ canTake: false })
      } finally {
        this.setData({ taking: false })
      }
    },
  },
})
