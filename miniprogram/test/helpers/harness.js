// Renders the apps' real pages and components with miniprogram-simulate against a fake `wx`,
// and acts on them as a person would: tap, type, read what the screen says.
'use strict'
const path = require('path')
const assert = require('node:assert')
const { simulate } = require('./dom')
const { createFakeWx } = require('./fake-wx')

const ROOT = path.resolve(__dirname, '../..')

/** Poll until `check()` is truthy (never a fixed sleep: a loaded machine is slow). */
async function waitFor(check, message, timeoutMs = 5000) {
  const start = Date.now()
  let last
  for (;;) {
    try {
      last = await check()
      if (last) return last
    } catch (e) {
      last = e
    }
    if (Date.now() - start > timeoutMs) {
      throw new Error(`timed out waiting for ${message || check.toString()}${last instanceof Error ? ': ' + last.message : ''}`)
    }
    await new Promise(r => setTimeout(r, 10))
  }
}

/** What a person reads must be Chinese with yuan: no "fen", no English sentence or message. */
function assertReadable(text) {
  text = text.replace(/https?:\/\/\S+/g, '') // a link the publisher gave is content, not interface
  assert.doesNotMatch(text, /\bfen\b|_fen|undefined|null|NaN|\[object/i, `screen shows a raw value: ${text}`)
  const english = text.match(/[A-Za-z]*[a-z]{3,}[A-Za-z]*/g) || []
  assert.deepStrictEqual(english, [], `screen shows English: ${text}`)
}

/** Each text node trimmed, joined by one space (elements are blocks on a phone). */
function visibleText(dom) {
  const parts = []
  const walker = dom.ownerDocument.createTreeWalker(dom, 4 /* NodeFilter.SHOW_TEXT */)
  while (walker.nextNode()) {
    const t = walker.currentNode.nodeValue.replace(/\s+/g, ' ').trim()
    if (t) parts.push(t)
  }
  return parts.join(' ')
}

class PageHandle {
  constructor(comp, route) {
    this.comp = comp
    this.route = route
    this.instance = comp.instance
  }
  get data() {
    return this.comp.data
  }
  find(selector) {
    let node = this.comp
    for (const part of selector.split('>>>').map(s => s.trim())) {
      node = node && node.querySelector(part)
    }
    return node
  }
  findAll(selector) {
    return this.comp.querySelectorAll(selector)
  }
  has(selector) {
    return !!this.find(selector)
  }
  /** The visible text (of the page or of one element), whitespace collapsed, checked readable. */
  text(selector) {
    const node = selector ? this.find(selector) : this.comp
    if (!node) throw new Error(`nothing matches ${selector}`)
    const text = visibleText(node.dom)
    assertReadable(text)
    return text
  }
  tap(selector) {
    const node = this.find(selector)
    if (!node) throw new Error(`nothing to tap at ${selector}; screen: ${this.comp.dom.textContent.replace(/\s+/g, ' ')}`)
    node.dispatchEvent('tap')
  }
  input(selector, value, event = 'input') {
    const node = this.find(selector)
    if (!node) throw new Error(`no input at ${selector}`)
    node.dispatchEvent(event, { detail: { value } })
  }
  trigger(selector, event, detail) {
    const node = this.find(selector)
    if (!node) throw new Error(`nothing at ${selector}`)
    node.dispatchEvent(event, { detail })
  }
  waitFor(check, message, timeoutMs) {
    return waitFor(() => check(this), message, timeoutMs)
  }
  waitForText(fragment, timeoutMs) {
    return waitFor(() => visibleText(this.comp.dom).includes(fragment) && this.text(), `“${fragment}” on ${this.route}`, timeoutMs).catch(e => {
      throw new Error(`${e.message}; the screen shows: ${visibleText(this.comp.dom).slice(0, 600)}`)
    })
  }
  waitForGone(selector, timeoutMs) {
    return waitFor(() => !this.has(selector), `${selector} to disappear`, timeoutMs)
  }
  close() {
    if (this.closed) return
    this.closed = true
    if (typeof this.instance.onUnload === 'function') this.instance.onUnload()
    this.comp.detach()
  }
}

/**
 * One app under test: a fake wx (routes from the test), the app's real context, and pages to open.
 * @param {'worker'|'publisher'} end
 */
let processApp = null

function setupApp(end, options = {}) {
  // wcc's compiled templates keep global state per process: one app per test file (process).
  if (processApp && processApp !== end) throw new Error(`this process already renders the ${processApp} app; put ${end} tests in another file`)
  processApp = end
  const wx = createFakeWx(Object.assign({ end, autoResume: true }, options))
  global.wx = wx
  if (!options.loggedOut) wx.setStorageSync('session.token', 'token-1')
  const { createContext } = require(path.join(ROOT, end, 'shared/context'))
  const ctx = createContext({ end, baseUrl: 'http://test.local', liveOptions: Object.assign({ backoffMinMs: 20, backoffMaxMs: 80 }, options.liveOptions) })
  const app = { ctx }
  const pages = []
  global.getApp = () => app
  global.getCurrentPages = () => pages.filter(p => !p.closed).map(p => p.instance)
  if (options.start !== false) ctx.start({ query: options.launchQuery || {} }).catch(() => {})

  function open(route, query = {}) {
    const id = simulate.load(path.join(ROOT, end, route), { rootPath: path.join(ROOT, end) })
    const comp = simulate.render(id)
    comp.attach(document.createElement('parent-wrapper'))
    const page = new PageHandle(comp, route)
    pages.push(page)
    if (typeof comp.instance.onLoad === 'function') comp.instance.onLoad(query)
    if (typeof comp.instance.onShow === 'function') comp.instance.onShow()
    return page
  }

  /** A component alone, with properties. */
  function mount(componentPath, props = {}) {
    const id = simulate.load(path.join(ROOT, end, componentPath), { rootPath: path.join(ROOT, end) })
    const comp = simulate.render(id, props)
    comp.attach(document.createElement('parent-wrapper'))
    const page = new PageHandle(comp, componentPath)
    pages.push(page)
    return page
  }

  function close() {
    pages.forEach(p => p.close())
    ctx.live.stop()
  }

  return { wx, ctx, app, open, mount, close }
}

module.exports = { setupApp, waitFor, assertReadable, visibleText, PageHandle, ROOT }
