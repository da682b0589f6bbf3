// A `wx` for one test: HTTP answered by the test's route table, a socket the test drives, and
// every other API a recorded, scriptable fake. Everything answers asynchronously, as WeChat does.
'use strict'

const later = fn => setTimeout(fn, 0)

function err(status, code, details) {
  return { status, body: { error: { code, message: `English message for ${code}`, details: details || {} } } }
}

function compile(pattern) {
  const names = []
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name)
    return '([^/]+)'
  })
  return { re: new RegExp(`^${source}$`), names }
}

class FakeSocketTask {
  constructor(options, wx) {
    this.options = options
    this.wx = wx
    this.sent = []
    this.handlers = { open: [], message: [], close: [], error: [] }
    this.closed = false
  }
  onOpen(fn) { this.handlers.open.push(fn) }
  onMessage(fn) { this.handlers.message.push(fn) }
  onClose(fn) { this.handlers.close.push(fn) }
  onError(fn) { this.handlers.error.push(fn) }
  send({ data }) {
    const message = JSON.parse(data)
    this.sent.push(message)
  }
  close() {
    if (this.closed) return
    this.closed = true
    later(() => this.handlers.close.forEach(fn => fn({ code: 1000 })))
  }
  // test side
  serverOpen() { this.handlers.open.forEach(fn => fn({})) }
  serverSend(message) { this.handlers.message.forEach(fn => fn({ data: JSON.stringify(message) })) }
  /** The server refuses the handshake: 503 server_busy with Retry-After (what a platform reports). */
  serverBusy(retryAfterS, report = 'header') {
    if (this.closed) return
    this.closed = true
    const res = report === 'header'
      ? { errMsg: 'connectSocket:fail Unexpected server response: 503', statusCode: 503, header: { 'Retry-After': String(retryAfterS) } }
      : { errMsg: 'connectSocket:fail Unexpected server response: 503' }
    this.handlers.error.forEach(fn => fn(res))
    this.handlers.close.forEach(fn => fn({ code: 1006 }))
  }
  serverDrop() {
    if (this.closed) return
    this.closed = true
    this.handlers.close.forEach(fn => fn({ code: 1006 }))
  }
}

/**
 * @param {{end?: string, routes?: object, autoWelcome?: boolean}} options
 *   routes: {'GET /hall': req => body | {status, body} | {networkError: true}} — paths after /api/v1/<end>
 */
function createFakeWx(options = {}) {
  const end = options.end || 'worker'
  const calls = []
  const storage = new Map()
  const modalAnswers = []
  const routes = []
  let eventId = 100
  const wx = {
    autoResume: !!options.autoResume,
    calls,
    sockets: [],
    toasts: [],
    modals: [],
    navigations: [],
    requests: [],
    uploads: [],
    subscribePrompts: [], // {tmplIds, inDialogTap}: asked inside a dialog's button callback?
    inDialogTap: false,
    modalsAnswered: 0, // dialogs whose button callback has run
    /** The names of the wx calls so far, in order ('request' as 'POST /tasks'). */
    sequence() {
      return calls.map(([name, o]) => (name === 'request' ? `${o.method || 'GET'} ${new URL(o.url).pathname.replace(`/api/v1/${end}`, '')}` : name))
    },
    chooseMediaFiles: ['/tmp/chosen-1.png'],
    behaviour: { requestPayment: 'success', requestMerchantTransfer: 'success', requestSubscribeMessage: 'success', uploadStatus: 201 },
    route(pattern, handler) {
      const [method, path] = pattern.split(' ')
      routes.unshift(Object.assign({ method, handler }, compile(path)))
      return wx
    },
    answerModal(confirm) { modalAnswers.push(confirm) },
    /** Server-side push of an event to the newest socket. */
    push(type, data) {
      eventId += 1
      const socket = wx.sockets[wx.sockets.length - 1]
      socket.serverSend({ id: eventId, seq: eventId, type, data, at: new Date().toISOString() })
      return eventId
    },
    called(name) { return calls.filter(c => c[0] === name).map(c => c[1]) },

    request(o) {
      calls.push(['request', o])
      const url = new URL(o.url)
      const prefix = `/api/v1/${end}`
      const path = url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length) : url.pathname
      const req = { method: o.method || 'GET', path, query: Object.fromEntries(url.searchParams), body: o.data, header: o.header }
      wx.requests.push(req)
      const route = routes.find(r => r.method === req.method && r.re.test(path))
      let answer
      if (!route) answer = err(404, 'not_found')
      else {
        const m = route.re.exec(path)
        req.params = Object.fromEntries(route.names.map((n, i) => [n, m[i + 1]]))
        try {
          answer = route.handler(req)
        } catch (e) {
          answer = err(500, 'boom')
        }
      }
      Promise.resolve(answer).then(a => {
        if (a && a.networkError) return o.fail && o.fail({ errMsg: 'request:fail' })
        const res = a && typeof a.status === 'number' && 'body' in a ? { statusCode: a.status, data: a.body } : { statusCode: 200, data: a }
        later(() => o.success && o.success(Object.assign({ header: {} }, res)))
      })
      return { abort() {} }
    },
    uploadFile(o) {
      calls.push(['uploadFile', o])
      wx.uploads.push(o)
      const progress = []
      later(() => {
        progress.forEach(fn => fn({ progress: 50, totalBytesSent: 50, totalBytesExpectedToSend: 100 }))
        later(() => {
          progress.forEach(fn => fn({ progress: 100, totalBytesSent: 100, totalBytesExpectedToSend: 100 }))
          const status = wx.behaviour.uploadStatus
          const data = status === 201 ? { ref: `ref-${wx.uploads.length}`, content_type: 'image/png', size_bytes: 100 } : err(status, status === 413 ? 'upload_too_large' : 'upload_rejected').body
          o.success({ statusCode: status, data: JSON.stringify(data) })
        })
      })
      return { onProgressUpdate: fn => progress.push(fn), abort() {} }
    },
    downloadFile(o) {
      calls.push(['downloadFile', o])
      later(() => o.success({ statusCode: 200, tempFilePath: `/tmp/download-${encodeURIComponent(o.url.split('/').pop())}.png` }))
    },
    connectSocket(o) {
      calls.push(['connectSocket', o])
      const socket = new FakeSocketTask(o, wx)
      wx.sockets.push(socket)
      if (options.autoWelcome !== false) {
        later(() => {
          if (socket.closed) return
          socket.serverOpen()
          socket.serverSend({ type: 'welcome', user_id: 1, end, last_seq: eventId, now: new Date().toISOString() })
          // Like the server: a resume (?after_seq=) with nothing missed is answered at once (tests
          // that replay events turn this off and answer themselves).
          const after = /[?&]after_seq=(\d+)/.exec(o.url)
          if (after && wx.autoResume) socket.serverSend({ type: 'resumed', last_seq: Math.max(eventId, Number(after[1])) })
        })
      }
      return socket
    },
    login(o) {
      calls.push(['login', o])
      later(() => o.success({ code: `code-${calls.length}` }))
    },
    getStorageSync: key => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => storage.set(key, value),
    removeStorageSync: key => storage.delete(key),
    showToast(o) { calls.push(['showToast', o]); wx.toasts.push(o.title) },
    showModal(o) {
      calls.push(['showModal', o])
      wx.modals.push(o)
      const confirm = modalAnswers.length ? modalAnswers.shift() : true
      later(() => {
        // What the page does in this callback is done in answer to the dialog's button tap.
        wx.inDialogTap = true
        try {
          if (o.success) o.success({ confirm, cancel: !confirm })
        } finally {
          wx.inDialogTap = false
          wx.modalsAnswered += 1
        }
      })
    },
    chooseMedia(o) {
      calls.push(['chooseMedia', o])
      const file = wx.chooseMediaFiles.shift()
      later(() => (file ? o.success({ tempFiles: [{ tempFilePath: file, size: 100, fileType: 'image' }], type: 'image' }) : o.fail({ errMsg: 'chooseMedia:fail cancel' })))
    },
  }
  for (const name of ['requestPayment', 'requestMerchantTransfer', 'requestSubscribeMessage']) {
    wx[name] = o => {
      calls.push([name, o])
      if (name === 'requestSubscribeMessage') wx.subscribePrompts.push({ tmplIds: o.tmplIds, inDialogTap: wx.inDialogTap })
      later(() => (wx.behaviour[name] === 'success' ? o.success && o.success({ errMsg: `${name}:ok` }) : o.fail && o.fail({ errMsg: `${name}:fail cancel` })))
    }
  }
  for (const name of ['navigateTo', 'redirectTo', 'switchTab', 'reLaunch', 'navigateBack']) {
    wx[name] = o => {
      calls.push([name, o])
      wx.navigations.push([name, o && o.url])
      later(() => o && o.success && o.success({}))
    }
  }
  for (const name of ['setClipboardData', 'saveImageToPhotosAlbum', 'previewImage']) {
    wx[name] = o => {
      calls.push([name, o])
      later(() => o.success && o.success({}))
    }
  }
  for (const name of ['stopPullDownRefresh', 'showLoading', 'hideLoading', 'setNavigationBarTitle', 'showShareMenu', 'vibrateShort']) {
    wx[name] = o => calls.push([name, o])
  }
  // A 2D offscreen canvas that records what is drawn (for the invitation poster).
  wx.canvases = []
  wx.createOffscreenCanvas = o => {
    const drawn = []
    const ctx2d = new Proxy({}, { get: (_, name) => (typeof name === 'string' && /^(fill|stroke|draw|clear|rect|arc|move|line|begin|close)/.test(name) ? (...args) => drawn.push([name, ...args.map(a => (a && a.src) || a)]) : undefined), set: (_, name, value) => drawn.push([name, value]) || true })
    const canvas = {
      options: o,
      drawn,
      getContext: () => ctx2d,
      createImage: () => {
        const img = {}
        let src = ''
        Object.defineProperty(img, 'src', { get: () => src, set: v => { src = v; later(() => img.onload && img.onload()) } })
        return img
      },
    }
    wx.canvases.push(canvas)
    return canvas
  }
  wx.canvasToTempFilePath = o => {
    calls.push(['canvasToTempFilePath', o])
    later(() => o.success({ tempFilePath: `/tmp/poster-${wx.canvases.indexOf(o.canvas)}.png` }))
  }
  wx.networkListeners = []
  wx.onNetworkStatusChange = fn => wx.networkListeners.push(fn)
  wx.getAccountInfoSync = () => ({ miniProgram: { appId: 'touristappid', envVersion: 'develop', version: '' } })

  // The server every test starts from: logged in, the default market settings.
  wx.route('POST /login', () => ({ token: 'token-1', expires_at: '2030-01-01T00:00:00Z', created: false, user: { id: 1, end, nickname: '小明', invite_code: 'INV1', inviter_id: null, created_at: '2026-11-01T00:00:00Z' } }))
  wx.route('GET /config', () => Object.assign({}, DEFAULT_CONFIG, { now: new Date().toISOString() }))
  wx.route('GET /me', () => ({ id: 1, end, nickname: '小明', invite_code: 'INV1', inviter_id: null, created_at: '2026-11-01T00:00:00Z' }))
  for (const r of Object.entries(options.routes || {})) wx.route(r[0], r[1])
  return wx
}

const DEFAULT_CONFIG = {
  appid: 'touristappid',
  min_unit_price_fen: 100,
  max_unit_price_fen: 10000,
  max_quantity: 100,
  publish_fee_bp: 1000,
  worker_invite_bp: 200,
  publisher_invite_bp: 1000,
  withdraw_fee_bp: 100,
  min_withdraw_fen: 1000,
  daily_withdraw_cap_fen: 500000,
  max_orders_in_progress: 1,
  take_window_s: 180,
  countdown_s: 300,
  review_window_s: 1200,
  appeal_window_s: 600,
  image_link_ttl_s: 3600,
  subscriptions: [],
}

module.exports = { createFakeWx, err, DEFAULT_CONFIG, FakeSocketTask }
