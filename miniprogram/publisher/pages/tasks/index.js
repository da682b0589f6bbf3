// My tasks by state, newest first, each with its funnel; live as slots are taken and orders move.

const { listen, debounce, pageLifetimes, navigate, dataset } = require('../../shared/ui')
const { taskCard } = require('../../shared/views')
const { reloadList, moreList } = require('../../shared/list')

const TABS = [
  { key: '', text: '全部' },
  { key: 'open', text: '进行中' },
  { key: 'full', text: '已抢完' },
  { key: 'expired', text: '已过期' },
  { key: 'cancelled', text: '已取消' },
  { key: 'finished', text: '已结束' },
]

/** @param {import('../../../types/models').PublisherTask} t */
function card(t) {
  return Object.assign(taskCard(t), { quantity: t.quantity, funnel: t.funnel })
}

/** @type {import('../../shared/list').ListSpec} */
const LIST = { path: '/tasks', key: 'tasks', toItem: card, query: page => ({ status: page.data.tab }) }

Component({
  data: { state: 'loading', errorText: '', tabs: TABS, tab: '', tasks: [], nextCursor: null, loadingMore: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad(query) {
      if (query && query.status) this.setData({ tab: query.status })
      listen(this, ['task.published', 'task.expired', 'task.cancelled', 'order.taken', 'order.changed', 'reconnected'], () => debounce(this, 'reload', 150, () => this.reload()))
      this.reload()
    },
    onPullDownRefresh() {
      this.reload().then(() => wx.stopPullDownRefresh())
    },
    onReachBottom() {
      this.more()
    },
    reload() {
      return reloadList(this, LIST)
    },
    more() {
      return moreList(this, LIST)
    },
    chooseTab(e) {
      this.setData({ tab: dataset(e).key, tasks: [], nextCursor: null })
      this.reload()
    },
    open(e) {
      navigate(`/pages/task/detail?id=${dataset(e).id}`)
    },
  },
})
