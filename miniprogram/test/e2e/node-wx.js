// A `wx` for Node that speaks to the real server: request on fetch (WeChat's semantics: success
// for any HTTP status, JSON parsed), uploadFile as multipart, downloadFile into a temp file,
// connectSocket on the `ws` package. The phone-side WeChat steps go to the server's WeChat sandbox
// as the WeChat client would: wx.login codes name the sandbox person, requestPayment pays the
// prepay order, requestMerchantTransfer confirms the transfer bill. Dialogs answer "confirm".
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const WebSocket = require('ws')

const later = fn => setTimeout(fn, 0)

/**
 * @param {{sandbox: string, person: string}} options  sandbox: http://host:port/sandbox
 */
function createNodeWx(options) {
  const storage = new Map()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-wx-'))
  const calls = []
  const network = { up: true, sockets: new Set() }
  let logins = 0
  let files = 0

  const wx = {
    calls,
    toasts: [],
    modals: [],
    network,
    router: null, // set by the app host: navigateTo & co. open real pages
    called: name => calls.filter(c => c[0] === name).map(c => c[1]),

    request(o) {
      calls.push(['request', { method: o.method, url: o.url }])
      if (!network.up) return later(() => o.fail && o.fail({ errMsg: 'request:fail network down' }))
      const headers = Object.assign({}, o.header || {})
      let body
      if (o.data !== undefined && (o.method || 'GET') !== 'GET') {
        body = typeof o.data === 'string' ? o.data : JSON.stringify(o.data)
        headers['Content-Type'] = headers['Content-Type'] || 'application/json'
      }
      fetch(o.url, { method: o.method || 'GET', headers, body })
        .then(async res => {
          const text = await res.text()
          let data = text
          try {
            data = JSON.parse(text)
          } catch (e) {
            /* not JSON: WeChat hands the text */
          }
          o.success && o.success({ statusCode: res.status, data, header: Object.fromEntries(res.headers) })
        })
        .catch(err => o.fail && o.fail({ errMsg: `request:fail ${err.message}` }))
      return { abort() {} }
    },

    uploadFile(o) {
      calls.push(['uploadFile', { url: o.url, filePath: o.filePath }])
      const progress = []
      later(async () => {
        if (!network.up) return o.fail && o.fail({ errMsg: 'uploadFile:fail network down' })
        try {
          const bytes = fs.readFileSync(o.filePath)
          const form = new FormData()
          form.append(o.name, new Blob([bytes]), path.basename(o.filePath))
          progress.forEach(fn => fn({ progress: 0, totalBytesSent: 0, totalBytesExpectedToSend: bytes.length }))
          const res = await fetch(o.url, { method: 'POST', headers: o.header || {}, body: form })
          progress.forEach(fn => fn({ progress: 100, totalBytesSent: bytes.length, totalBytesExpectedToSend: bytes.length }))
          o.success && o.success({ statusCode: res.status, data: await res.text() })
        } catch (err) {
          o.fail && o.fail({ errMsg: `uploadFile:fail ${err.message}` })
        }
      })
      return { onProgressUpdate: fn => progress.push(fn), abort() {} }
    },

    downloadFile(o) {
      calls.push(['downloadFile', { url: o.url }])
      later(async () => {
        if (!network.up) return o.fail && o.fail({ errMsg: 'downloadFile:fail network down' })
        try {
          const res = await fetch(o.url, { headers: o.header || {} })
          const file = path.join(tmp, `download-${++files}`)
          fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()))
          o.success && o.success({ statusCode: res.status, tempFilePath: file })
        } catch (err) {
          o.fail && o.fail({ errMsg: `downloadFile:fail ${err.message}` })
        }
      })
    },

    connectSocket(o) {
      calls.push(['connectSocket', { url: o.url }])
      const handlers = { open: [], message: [], close: [], error: [] }
      let closed = false
      const fire = (kind, arg) => handlers[kind].forEach(fn => fn(arg))
      const task = {
        onOpen: fn => handlers.open.push(fn),
        onMessage: fn => handlers.message.push(fn),
        onClose: fn => handlers.close.push(fn),
        onError: fn => handlers.error.push(fn),
        send: ({ data }) => ws && ws.readyState === WebSocket.OPEN && ws.send(data),
        close: () => {
          if (ws) ws.close()
        },
      }
      let ws = null
      if (!network.up) {
        later(() => fire('error', { errMsg: 'connectSocket:fail network down' }))
        return task
      }
      ws = new WebSocket(o.url, { headers: o.header || {} })
      network.sockets.add(ws)
      ws.on('open', () => fire('open', {}))
      ws.on('message', data => fire('message', { data: data.toString() }))
      ws.on('error', err => fire('error', { errMsg: err.message }))
      // A refused handshake: the status and headers, as a platform that reports them would give them.
      ws.on('unexpected-response', (req, res) => {
        fire('error', { errMsg: `connectSocket:fail Unexpected server response: ${res.statusCode}`, statusCode: res.statusCode, header: res.headers })
        req.destroy()
      })
      ws.on('close', code => {
        network.sockets.delete(ws)
        if (closed) return
        closed = true
        fire('close', { code })
      })
      return task
    },

    /** The phone loses its network: every socket dies at once, requests fail until restore(). */
    dropNetwork() {
      network.up = false
      for (const ws of network.sockets) ws.terminate()
    },
    restoreNetwork() {
      network.up = true
    },

    login(o) {
      calls.push(['login', {}])
      later(() => o.success({ code: `${options.person}-${++logins}` }))
    },

    requestPayment(o) {
      calls.push(['requestPayment', { package: o.package }])
      sandboxFind('orders', x => o.package === `prepay_id=${x.prepay_id}`)
        .then(order => sandboxPost('/pay/_simulate/pay', { out_trade_no: order.out_trade_no, wait: true }))
        .then(() => o.success && o.success({ errMsg: 'requestPayment:ok' }))
        .catch(err => o.fail && o.fail({ errMsg: `requestPayment:fail ${err.message}` }))
    },

    requestMerchantTransfer(o) {
      calls.push(['requestMerchantTransfer', { package: o.package, mchId: o.mchId, appId: o.appId, openId: o.openId }])
      // The sandbox's inspection view does not show a bill's package: the bill waiting for this
      // user's confirmation is the one (one withdrawal at a time in these journeys).
      sandboxFind('transfers', x => x.openid === o.openId && x.appid === o.appId && x.state === 'WAIT_USER_CONFIRM')
        .then(bill => sandboxPost('/pay/_simulate/confirm_transfer', { out_bill_no: bill.out_bill_no, result: 'SUCCESS', wait: true }))
        .then(() => o.success && o.success({ errMsg: 'requestMerchantTransfer:ok' }))
        .catch(err => o.fail && o.fail({ errMsg: `requestMerchantTransfer:fail ${err.message}` }))
    },

    requestSubscribeMessage(o) {
      calls.push(['requestSubscribeMessage', { tmplIds: o.tmplIds }])
      const result = { errMsg: 'requestSubscribeMessage:ok' }
      o.tmplIds.forEach(id => (result[id] = 'accept'))
      later(() => o.success && o.success(result))
    },

    chooseMedia(o) {
      calls.push(['chooseMedia', {}])
      const file = path.join(tmp, `photo-${++files}.png`)
      fs.writeFileSync(file, tinyPng())
      later(() => o.success({ tempFiles: [{ tempFilePath: file, size: fs.statSync(file).size, fileType: 'image' }], type: 'image' }))
    },

    showModal(o) {
      calls.push(['showModal', { title: o.title, content: o.content }])
      wx.modals.push(o)
      later(() => o.success && o.success({ confirm: true, cancel: false }))
    },
    showToast(o) {
      calls.push(['showToast', { title: o.title }])
      wx.toasts.push(o.title)
    },
    getStorageSync: key => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => storage.set(key, value),
    removeStorageSync: key => storage.delete(key),
    getAccountInfoSync: () => ({ miniProgram: { appId: 'touristappid', envVersion: 'develop', version: '' } }),
    cleanup() {
      fs.rmSync(tmp, { recursive: true, force: true })
    },
  }
  for (const name of ['navigateTo', 'redirectTo', 'switchTab', 'reLaunch', 'navigateBack']) {
    wx[name] = o => {
      calls.push([name, { url: o && o.url }])
      later(() => {
        try {
          wx.router[name](o || {})
          o && o.success && o.success({})
        } catch (err) {
          if (o && o.fail) o.fail({ errMsg: `${name}:fail ${err.message}` })
          else throw err
        }
      })
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

  async function sandboxInspect() {
    return (await fetch(`${options.sandbox}/_inspect`)).json()
  }
  async function sandboxFind(kind, match) {
    for (let i = 0; i < 50; i++) {
      const found = (await sandboxInspect())[kind].find(match)
      if (found) return found
      await new Promise(r => setTimeout(r, 100))
    }
    throw new Error(`no sandbox ${kind} matches`)
  }
  async function sandboxPost(p, body) {
    const res = await fetch(`${options.sandbox}${p}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
    if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`)
    return res.json()
  }
  return wx
}

/** A real 1×1 PNG (the server checks images by their content). */
function tinyPng() {
  return Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0f01f0005000201e221bc330000000049454e44ae426082', 'hex')
}

module.exports = { createNodeWx, tinyPng }
