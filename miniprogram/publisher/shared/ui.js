// Small helpers every screen uses: the app context, Chinese toasts and confirmations, live-event
// subscriptions that end with the page, and a debounce for "something changed, reload".

const { errorText } = require('./errors')

const subscriptions = new WeakMap() // page instance -> unsubscribe functions
const timers = new WeakMap() // page instance -> {name: timer}

/** @returns {import('../../types/client').Ctx} (typed per app: types/client.d.ts) */
function ctx() {
  return getApp().ctx
}

function toast(title, icon) {
  wx.showToast({ title, icon: icon || 'none', duration: 2000 })
}

function showError(err) {
  toast(errorText(err))
}

/**
 * A confirmation dialog; resolves true when the person confirms. `onConfirm` runs inside the
 * confirm tap's own callback, before the promise resolves (after an `await` it would no longer be
 * in answer to a tap): for what WeChat allows only then, such as wx.requestSubscribeMessage.
 * @param {string} title
 * @param {string} content
 * @param {string} [confirmText]
 * @param {() => void} [onConfirm]
 * @returns {Promise<boolean>}
 */
function confirm(title, content, confirmText, onConfirm) {
  return new Promise(resolve => {
    wx.showModal({
      title,
      content,
      confirmText: confirmText || '确定',
      cancelText: '取消',
      success: res => {
        if (res.confirm && onConfirm) onConfirm()
        resolve(!!res.confirm)
      },
      fail: () => resolve(false),
    })
  })
}

/** Subscribe `page` to live events; every subscription ends when the page is detached. */
function listen(page, types, handler) {
  const offs = subscriptions.get(page) || []
  types.forEach(type => offs.push(ctx().live.on(type, handler)))
  subscriptions.set(page, offs)
}

/** Call `fn` once, `ms` after the last of a burst of calls (per page and name). */
function debounce(page, name, ms, fn) {
  const mine = timers.get(page) || {}
  if (mine[name]) clearTimeout(mine[name])
  mine[name] = setTimeout(() => {
    mine[name] = null
    fn()
  }, ms)
  timers.set(page, mine)
}

/** Undo listen() and debounce() for a page (call from `detached`). */
function release(page) {
  ;(subscriptions.get(page) || []).forEach(off => off())
  subscriptions.delete(page)
  const mine = timers.get(page) || {}
  Object.keys(mine).forEach(k => mine[k] && clearTimeout(mine[k]))
  timers.delete(page)
}

/** Lifetimes every page shares: release its subscriptions and timers when it goes away. */
const pageLifetimes = {
  detached() {
    release(this)
  },
}

/** Open a screen; a tab screen (which navigateTo refuses) is switched to instead. */
function navigate(url) {
  wx.navigateTo({
    url,
    fail: () => wx.switchTab({ url: url.split('?')[0] }),
  })
}

/** The `data-*` of the element that was tapped. */
function dataset(e) {
  return (e && e.currentTarget && e.currentTarget.dataset) || {}
}

module.exports = { ctx, toast, showError, confirm, listen, debounce, release, pageLifetimes, navigate, dataset, errorText }
