// Withdrawal history (both apps), live: each withdrawal's state, fee and payout; "确认收款" calls
// wx.requestMerchantTransfer while WeChat waits for the user's confirmation.

const { listen, debounce, pageLifetimes, dataset } = require('../../shared/ui')
const { withdrawalRow } = require('../../shared/views')
const { reloadList, moreList } = require('../../shared/list')
const { confirmTransfer } = require('../../shared/transfer')

/** @type {import('../../shared/list').ListSpec} */
const LIST = { path: '/withdrawals', key: 'items', toItem: withdrawalRow }

Component({
  data: { state: 'loading', errorText: '', items: /** @type {any[]} */ ([]), nextCursor: /** @type {string | null} */ (null), loadingMore: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      listen(this, ['withdrawal.changed', 'reconnected'], () => debounce(this, 'reload', 150, () => this.reload()))
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
    async confirmReceipt(e) {
      const w = this.data.items.find(x => x.id === dataset(e).id)
      if (w && w.transfer) await confirmTransfer(w)
      this.reload()
    },
  },
})
