// One per app (App.onLaunch builds it; pages reach it with getApp().ctx): the API client, the
// server clock, the live socket, the market's configuration, and what happens when a user is banned.

const { createApi } = require('./api')
const { createClock } = require('./time')
const { createLive } = require('./live')

/** The invite code carried by a launch: a Mini Program code's `scene` (URL-encoded) or a share card's query. */
function inviteFromLaunch(launch) {
  const query = (launch && launch.query) || {}
  const raw = query.scene || query.invite_code || ''
  try {
    return decodeURIComponent(String(raw)).trim()
  } catch (e) {
    return String(raw).trim()
  }
}

/**
 * @param {{end: 'worker'|'publisher', baseUrl: string, liveOptions?: object}} options
 * @returns {import('../../types/client').Ctx} (typed per app: types/client.d.ts)
 */
function createContext(options) {
  const clock = createClock()
  let bannedShown = false
  // Its methods are added below; the type is the whole context (types/client.d.ts Ctx).
  const ctx = /** @type {import('../../types/client').Ctx} */ (/** @type {unknown} */ ({
    end: options.end,
    clock,
    config: null,
    banned: null, // the ApiError that said so, for the banned screen
    api: null,
    live: null,
    user: null,
    _ready: null,
  }))
  ctx.api = createApi({
    end: options.end,
    baseUrl: options.baseUrl,
    clock,
    onBanned(err) {
      ctx.banned = err
      if (ctx.live) ctx.live.stop()
      if (!bannedShown) {
        bannedShown = true
        wx.reLaunch({ url: '/pages/banned/index' })
      }
    },
  })
  ctx.live = createLive(Object.assign({ api: ctx.api, clock }, options.liveOptions || {}))
  // Back on the network (a lift, a tunnel): reconnect now rather than at the end of the backoff.
  if (typeof wx.onNetworkStatusChange === 'function') {
    wx.onNetworkStatusChange(res => {
      if (res.isConnected) ctx.live.wake()
    })
  }

  /** The ban was lifted (the banned screen logged in again): show the banned screen again next time. */
  ctx.clearBanned = function clearBanned() {
    ctx.banned = null
    bannedShown = false
  }

  /**
   * End every session of this account on this Mini Program (a lost phone), then log this phone in
   * again: in a Mini Program the WeChat account is the identity, so this phone stays usable.
   */
  ctx.logoutEverywhere = async function logoutEverywhere() {
    ctx.live.stop()
    try {
      await ctx.api.logout()
    } finally {
      const data = await ctx.api.login()
      ctx.user = data.user
      ctx.live.start()
    }
  }

  /** Log in (binding an invite from the launch), load the configuration, open the socket. */
  ctx.start = function start(launch) {
    ctx.api.rememberInvite(inviteFromLaunch(launch))
    ctx._ready = ctx.api
      .login()
      .then(data => {
        ctx.user = data.user
        ctx.live.start()
        return ctx.loadConfig().catch(() => null)
      })
      .then(() => ctx)
    return ctx._ready
  }

  /** Resolves when the first login is done (pages await it before their first request). */
  ctx.ready = function ready() {
    if (!ctx._ready) return ctx.start({})
    // A failed first login (no network) is tried again by the next page that needs it.
    return ctx._ready.catch(() => ctx.start({}))
  }

  /** GET /{end}/config: price range, fees, limits, timers, subscription templates (cached). */
  ctx.loadConfig = function loadConfig(force) {
    if (ctx.config && !force) return Promise.resolve(ctx.config)
    return ctx.api.get('/config').then(config => {
      ctx.config = config
      return config
    })
  }

  /**
   * Ask for subscription messages for these events (call it in a tap handler: WeChat shows the
   * prompt only in answer to a tap). Events without a configured template are skipped.
   */
  ctx.askSubscribe = function askSubscribe(events) {
    const templates = (ctx.config && ctx.config.subscriptions) || [] // [{event, template_id, page}]
    const ids = []
    templates.forEach(t => {
      if (events.indexOf(t.event) >= 0 && t.template_id && ids.indexOf(t.template_id) < 0) ids.push(t.template_id)
    })
    if (!ids.length || typeof wx.requestSubscribeMessage !== 'function') return Promise.resolve(null)
    // WeChat takes at most 3 templates per prompt.
    return new Promise(resolve => {
      wx.requestSubscribeMessage({ tmplIds: ids.slice(0, 3), success: resolve, fail: () => resolve(null) })
    })
  }

  return ctx
}

module.exports = { createContext, inviteFromLaunch }
