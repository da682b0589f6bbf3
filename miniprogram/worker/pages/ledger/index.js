// Account details (both apps): every posting with its time, kind, amount and the balance after
// it, newest first, loading older pages as the person scrolls (infinite scroll).

const { listen, debounce, pageLifetimes } = require('../../shared/ui')
const { postingRow } = require('../../shared/views')
const { reloadList, moreList } = require('../../shared/list')

/** @type {import('../../shared/list').ListSpec} */
const LIST = { path: '/ledger', key: 'items', toItem: postingRow }

Component({
  data: { state: 'loading', errorText: '', items: [], nextCursor: null, loadingMore: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      listen(this, ['wallet.changed', 'reconnected'], () => debounce(this, 'reload', 150, () => this.reload()))
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
  },
})
