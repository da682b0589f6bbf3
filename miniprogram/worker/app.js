// The Worker Mini Program: take timed tasks, finish them before the countdown ends, get paid.
const { createContext } = require('./shared/context')
const env = require('./env')

App({
  ctx: /** @type {import('../types/client').Ctx | null} */ (null), // shared/context.js, built at launch; pages use getApp().ctx
  onLaunch(options) {
    // An invite `scene` in the launch query (a shared card or a Mini Program code) binds the inviter
    // at this account's first login.
    this.ctx = createContext({ end: 'worker', baseUrl: env.current().baseUrl })
    this.ctx.start(options).catch(() => {
      /* no network at launch: each page shows its error state and tries again */
    })
  },
  onShow() {
    if (!this.ctx) return
    this.ctx.live.wake()
    // Back in the foreground: the operators may have changed prices, fees or timers meanwhile.
    if (this.ctx.user) this.ctx.loadConfig(true).catch(() => {})
  },
})
