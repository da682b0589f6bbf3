// The task hall: open tasks, newest first, updating live (published, taken, expired) with
// pull-to-refresh, infinite scroll and a price filter. Tapping a task opens it.

const { listen, debounce, pageLifetimes, navigate, dataset } = require('../../shared/ui')
const { taskCard } = require('../../shared/views')
const { reloadList, moreList } = require('../../shared/list')

// Price filters in fen (people pick a range; the server filters on unit_price_fen).
const FILTERS = [
  { key: 'all', text: '全部' },
  { key: 'low', text: '¥5以下', max: 499 },
  { key: 'mid', text: '¥5-¥20', min: 500, max: 2000 },
  { key: 'high', text: '¥20以上', min: 2001 },
]

function rangeOf(key) {
  const f = FILTERS.find(x => x.key === key) || FILTERS[0]
  return { min_price_fen: f.min, max_price_fen: f.max }
}

function inRange(key, priceFen) {
  const r = rangeOf(key)
  return (r.min_price_fen == null || priceFen >= r.min_price_fen) && (r.max_price_fen == null || priceFen <= r.max_price_fen)
}

/** @type {import('../../shared/list').ListSpec} */
const LIST = { path: '/hall', key: 'tasks', toItem: taskCard, query: page => rangeOf(page.data.filter) }

Component({
  data: { state: 'loading', errorText: '', filters: FILTERS, filter: 'all', tasks: /** @type {any[]} */ ([]), nextCursor: /** @type {string | null} */ (null), loadingMore: false },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      listen(this, ['hall.task_published'], e => {
        if (inRange(this.data.filter, e.data.unit_price_fen)) debounce(this, 'reload', 100, () => this.reload())
      })
      listen(this, ['hall.task_changed', 'hall.task_removed'], e => this.applyChange(e))
      listen(this, ['reconnected'], () => this.reload())
      this.reload()
    },
    onPullDownRefresh() {
      this.reload().then(() => wx.stopPullDownRefresh())
    },
    onReachBottom() {
      this.more()
    },
    /** A task was taken or closed: change its card in place, or drop it when it left the hall. */
    applyChange(e) {
      const d = e.data || {}
      const gone = e.type === 'hall.task_removed' || d.status !== 'open' || d.slots_untaken === 0
      const tasks = gone
        ? this.data.tasks.filter(t => t.id !== d.task_id)
        : this.data.tasks.map(t => (t.id === d.task_id ? Object.assign({}, t, { slotsUntaken: d.slots_untaken, slotsText: t.slotsText.replace(/\d+\//, `${d.slots_untaken}/`) }) : t))
      this.setData({ tasks, state: tasks.length ? 'ready' : this.data.nextCursor ? 'ready' : 'empty' })
    },
    reload() {
      return reloadList(this, LIST)
    },
    more() {
      return moreList(this, LIST)
    },
    chooseFilter(e) {
      const key = dataset(e).key
      if (key === this.data.filter) return
      this.setData({ filter: key, tasks: [], nextCursor: null })
      this.reload()
    },
    open(e) {
      navigate(`/pages/task/detail?id=${dataset(e).id}`)
    },
  },
})
