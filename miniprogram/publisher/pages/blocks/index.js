// The workers I blocked, newest first (any number: pages of 20), each with the reason I gave and
// their record; unblocking lets them see and take my tasks again.

const { ctx, toast, showError, confirm, pageLifetimes, dataset } = require('../../shared/ui')
const { workerRecordText } = require('../../shared/views')
const { beijing } = require('../../shared/time')
const { reloadList, moreList } = require('../../shared/list')

/** @param {import('../../../types/models').Block} b */
function blockRow(b) {
  return {
    id: b.id,
    workerId: b.worker_id,
    name: b.nickname || `接单者 #${b.worker_id}`,
    reason: b.reason,
    recordText: workerRecordText(b.worker_record),
    createdText: beijing(b.created_at),
  }
}

/** @type {import('../../shared/list').ListSpec} */
const LIST = { path: '/blocks', key: 'blocks', toItem: blockRow }

Component({
  data: { state: 'loading', errorText: '', blocks: /** @type {any[]} */ ([]), nextCursor: /** @type {string | null} */ (null), loadingMore: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      this.reload()
    },
    onPullDownRefresh() {
      this.reload().then(() => wx.stopPullDownRefresh())
    },
    onReachBottom() {
      moreList(this, LIST)
    },
    reload() {
      return reloadList(this, LIST)
    },
    async unblock(e) {
      const workerId = Number(dataset(e).id)
      if (!(await confirm('解除屏蔽', '解除后 TA 可以再看到并领取你的任务。', '解除'))) return
      try {
        await ctx().api.del(`/blocks/${workerId}`)
        const blocks = this.data.blocks.filter(b => b.workerId !== workerId)
        toast('已解除屏蔽', 'success')
        // The last one shown is gone but more pages wait: load them, never say "none" while some remain.
        if (!blocks.length && this.data.nextCursor) return this.reload()
        this.setData({ blocks, state: blocks.length ? 'ready' : 'empty' })
      } catch (err) {
        showError(err)
      }
    },
  },
})
