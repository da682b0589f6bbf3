// A live countdown to an absolute deadline, against the server's clock (getApp().ctx.clock), so it
// does not drift with the phone's clock. Fires `expire` once when it reaches zero.

const { countdownText } = require('../../time')

const intervals = new WeakMap()

Component({
  properties: {
    deadline: { type: String, value: '' }, // ISO 8601 UTC
    label: { type: String, value: '' },
    doneText: { type: String, value: '已截止' },
  },
  data: { text: '', done: false, urgent: false },
  observers: {
    deadline() {
      this.tick(true)
    },
  },
  lifetimes: {
    attached() {
      this.tick(true)
      intervals.set(this, setInterval(() => this.tick(false), 1000))
    },
    detached() {
      clearInterval(intervals.get(this))
      intervals.delete(this)
    },
  },
  methods: {
    tick(reset) {
      if (!this.properties.deadline) {
        this.setData({ text: '', done: false, urgent: false })
        return
      }
      const left = getApp().ctx.clock.remainingMs(this.properties.deadline)
      const done = left <= 0
      if (done && !this.data.done && !reset) this.triggerEvent('expire', {})
      this.setData({ text: countdownText(left), done, urgent: !done && left < 60000 })
    },
  },
})
