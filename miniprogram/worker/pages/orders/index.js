// My orders by state, newest first, kept current by order.changed; tapping one opens it.

const { listen, debounce, pageLifetimes, navigate, dataset } = require('../../shared/ui')
const { orderCard } = require('../../shared/views')
const { reloadList, moreList } = require('../../shared/list')

const TABS = [
  { key: '', text: '全部' },
  { key: 'in_progress', text: '进行中' },
  { key: 'awaiting_review', text: '待审核' },
  { key: 'rejected', text: '已驳回' },
  { key: 'appealing', text: '申诉中' },
  { key: 'completed', text: '已完成' },
  { key: 'failed', text: '已失败' },
  { key: 'abandoned', text: '已放弃' },
]

/** @type {import('../../shared/list').ListSpec} */
const LIST = { path: '/orders', key: 'orders', toItem: orderCard, query: page => ({ status: page.data.tab }) }

Component({
  data: { state: 'loading', errorText: '', tabs: TABS, tab: '', orders: [], nextCursor: null, loadingMore: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad(query) {
      if (query && query.status) this.setData({ tab: query.status })
      listen(this, ['order.changed', 'reconnected'], () => debounce(this, 'reload', 150, () => this.reload()))
      this.reload()
    },
    onShow() {
      if (this.data.state === 'ready' || this.data.state === 'empty') this.reload()
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
      this.setData({ tab: dataset(e).key, orders: [], nextCursor: null })
      this.reload()
    },
    open(e) {
      navigate(`/pages/order/detail?id=${dataset(e).id}`)
    },
  },
})
