// One Mini Program running in its own worker thread, like an app on its own phone: its own
// globals (wx, getApp, the DOM), its real app.js launched with a launch query, its real pages
// opened by wx.navigateTo & co. The test drives it by messages (see driver.js).
'use strict'
const { parentPort, workerData } = require('worker_threads')
const path = require('path')
const { simulate } = require('../helpers/dom')
const { visibleText } = require('../helpers/harness')
const { createNodeWx } = require('./node-wx')

const ROOT = path.resolve(__dirname, '../..')
const { end, base, person, launchQuery } = workerData
const appRoot = path.join(ROOT, end)

global.wx = createNodeWx({ sandbox: `${base}/sandbox`, person })
require(path.join(appRoot, 'env.js')).ENVIRONMENTS.develop.baseUrl = base // the test's server

let app = null
global.App = options => {
  app = options
}
global.getApp = () => app
const stack = [] // the page stack, top last
global.getCurrentPages = () => stack.map(p => p.comp.instance)

function parse(url) {
  const [route, qs] = String(url).replace(/^\//, '').split('?')
  const query = {}
  new URLSearchParams(qs || '').forEach((v, k) => (query[k] = v))
  return { route, query }
}

function open(url) {
  const { route, query } = parse(url)
  const id = simulate.load(path.join(appRoot, route), { rootPath: appRoot })
  const comp = simulate.render(id)
  comp.attach(document.createElement('parent-wrapper'))
  const page = { route, query, comp }
  stack.push(page)
  if (typeof comp.instance.onLoad === 'function') comp.instance.onLoad(query)
  if (typeof comp.instance.onShow === 'function') comp.instance.onShow()
  return page
}

function closeTop() {
  const page = stack.pop()
  if (!page) return
  if (typeof page.comp.instance.onUnload === 'function') page.comp.instance.onUnload()
  page.comp.detach()
}

const tabs = new Set(((require(path.join(appRoot, 'app.json')).tabBar || {}).list || []).map(t => t.pagePath))
wx.router = {
  navigateTo(o) {
    if (tabs.has(parse(o.url).route)) throw new Error('can not navigateTo a tabbar page')
    open(o.url)
  },
  redirectTo(o) {
    closeTop()
    open(o.url)
  },
  switchTab(o) {
    while (stack.length) closeTop()
    open(o.url)
  },
  reLaunch(o) {
    while (stack.length) closeTop()
    open(o.url)
  },
  navigateBack() {
    closeTop()
    const top = stack[stack.length - 1]
    if (top && typeof top.comp.instance.onShow === 'function') top.comp.instance.onShow()
  },
}

require(path.join(appRoot, 'app.js'))
app.onLaunch({ path: 'pages/index/index', query: launchQuery || {}, scene: launchQuery && launchQuery.scene ? 1047 : 1001 })
if (app.onShow) app.onShow()
open('/pages/index/index')

function top() {
  const page = stack[stack.length - 1]
  if (!page) throw new Error('no page is open')
  return page
}

function find(selector) {
  let node = top().comp
  for (const part of selector.split('>>>').map(s => s.trim())) node = node && node.querySelector(part)
  if (!node) throw new Error(`nothing at ${selector} on ${top().route}`)
  return node
}

const ops = {
  route: () => top().route,
  text: () => visibleText(top().comp.dom),
  has: ({ selector }) => {
    try {
      find(selector)
      return true
    } catch (e) {
      return false
    }
  },
  tap: ({ selector }) => find(selector).dispatchEvent('tap'),
  input: ({ selector, value, event }) => find(selector).dispatchEvent(event || 'input', { detail: { value } }),
  call: ({ method, args }) => top().comp.instance[method](...(args || [])),
  data: () => JSON.parse(JSON.stringify(top().comp.data)),
  go: ({ how, url }) => wx.router[how]({ url }),
  calls: ({ name }) => JSON.parse(JSON.stringify(wx.called(name))),
  toasts: () => wx.toasts.slice(),
  live: () => ({ state: app.ctx.live.state, lastSeq: app.ctx.live.lastSeq }),
  user: () => app.ctx.user,
  dropNetwork: () => wx.dropNetwork(),
  restoreNetwork: () => wx.restoreNetwork(),
  close: () => {
    while (stack.length) closeTop()
    app.ctx.live.stop()
    wx.cleanup()
  },
}

parentPort.on('message', async ({ id, op, args }) => {
  try {
    const result = await ops[op](args || {})
    parentPort.postMessage({ id, result: result === undefined ? null : result })
  } catch (err) {
    parentPort.postMessage({ id, error: err.message })
  }
})
