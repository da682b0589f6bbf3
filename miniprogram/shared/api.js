// The HTTP client of both apps (docs/api.md). Calls go to /api/v1/<end>/..., carry the session
// token, and resolve with the JSON body; every failure is an ApiError with a stable `code` and a
// Chinese `text`. A 401 logs in again silently (wx.login) and repeats the call once; a banned user
// is sent to the banned screen. Every response's `now` keeps the clock in step with the server.

const { ApiError } = require('./errors')

const TOKEN_KEY = 'session.token'
const REFRESH_KEY = 'session.refresh'
const READ_RETRY_MS = 800

function toQuery(params) {
  const parts = []
  Object.keys(params || {}).forEach(key => {
    const value = params[key]
    if (value === undefined || value === null || value === '') return
    parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`)
  })
  return parts.length ? `?${parts.join('&')}` : ''
}

function wxCall(name, options) {
  return new Promise((resolve, reject) => {
    wx[name](Object.assign({}, options, { success: resolve, fail: reject }))
  })
}

/** What wx.request's fail says, as one of our codes. */
function failureCode(err) {
  const msg = (err && err.errMsg) || ''
  return /timeout/i.test(msg) ? 'timeout' : 'network_error'
}

function errorFrom(statusCode, data) {
  const body = typeof data === 'string' ? safeJson(data) : data
  const error = body && body.error
  const code = (error && error.code) || (statusCode >= 500 ? 'server_error' : 'http_' + statusCode)
  return new ApiError(code, statusCode, error && error.details, error && error.message)
}

function safeJson(text) {
  try {
    return JSON.parse(text)
  } catch (e) {
    return null
  }
}

/**
 * Typed per app from docs/openapi.json (types/client.d.ts `Api`): each get/post/... call's path,
 * body and answer are the documented ones of this end.
 * @param {{end: 'worker'|'publisher', baseUrl: string, clock?: {sync(now: string): void},
 *          onBanned?: (err: ApiError) => void}} options
 * @returns {import('../../types/client').Api}
 */
function createApi(options) {
  const { end, baseUrl } = options
  let token = wx.getStorageSync(TOKEN_KEY) || ''
  let refreshToken = wx.getStorageSync(REFRESH_KEY) || '' // single-use: replaced by every refresh
  let loggingIn = null
  let renewing = null
  let pendingInvite = null // a scene / invite code to bind at the first login
  let user = null

  function url(path) {
    return `${baseUrl}${path.startsWith('/api/') ? path : `/api/v1/${end}${path}`}`
  }

  function header(extra) {
    const h = Object.assign({ 'Accept-Language': 'zh-CN' }, extra)
    if (token) h.Authorization = `Bearer ${token}`
    return h
  }

  function setToken(value) {
    token = value || ''
    if (token) wx.setStorageSync(TOKEN_KEY, token)
    else wx.removeStorageSync(TOKEN_KEY)
  }

  function setRefreshToken(value) {
    refreshToken = value || ''
    if (refreshToken) wx.setStorageSync(REFRESH_KEY, refreshToken)
    else wx.removeStorageSync(REFRESH_KEY)
  }

  /**
   * Tokens from /login or /refresh: keep both (a refresh token is used once).
   * @param {import('../../types/client').Login | import('../../types/client').Tokens} data
   */
  function keep(data) {
    setToken(data.token)
    if (data.refresh_token) setRefreshToken(data.refresh_token)
    if ('user' in data && data.user) user = data.user
  }

  /**
   * The access token was refused (expired, or its session ended): trade the refresh token for a
   * new pair; when that is refused too (or the server has no refresh), log in again with wx.login.
   * Both are silent for the person. Concurrent callers share one renewal.
   */
  function renew() {
    if (!renewing) {
      renewing = (async () => {
        setToken('')
        if (refreshToken) {
          const used = refreshToken
          setRefreshToken('')
          const res = await send('POST', '/refresh', { refresh_token: used }).catch(() => null)
          /** @type {import('../../types/client').Tokens} */
          const tokens = res && res.statusCode === 200 ? res.data : null
          if (tokens && tokens.token) {
            keep(tokens)
            return
          }
          if (res && res.statusCode === 403 && options.onBanned) {
            const err = errorFrom(res.statusCode, res.data)
            if (err.code === 'user_banned') {
              options.onBanned(err)
              throw err
            }
          }
        }
        await login()
      })().finally(() => {
        renewing = null
      })
    }
    return renewing
  }

  function onResponse(data) {
    if (data && typeof data === 'object' && typeof data.now === 'string' && options.clock) options.clock.sync(data.now)
  }

  function send(method, path, body, query) {
    return new Promise((resolve, reject) => {
      wx.request({
        url: url(path) + toQuery(query),
        method,
        data: body === undefined ? undefined : body,
        header: header(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        timeout: 15000,
        success: res => resolve(res),
        fail: err => reject(new ApiError(failureCode(err), 0)),
      })
    })
  }

  /**
   * wx.login + POST /login; binds `pendingInvite` when this is the account's first login.
   * @returns {Promise<import('../../types/client').Login>}
   */
  async function doLogin() {
    for (let attempt = 0; ; attempt++) {
      const { code } = await wxCall('login', {}).catch(() => {
        throw new ApiError('network_error', 0)
      })
      /** @type {import('../../types/client').RequestBody<'/login', 'post'>} */
      const body = { code }
      if (pendingInvite) body.scene = pendingInvite
      const res = await send('POST', '/login', body)
      if (res.statusCode === 200) {
        /** @type {import('../../types/client').Login} */
        const data = res.data
        keep(data)
        pendingInvite = null
        return data
      }
      const err = errorFrom(res.statusCode, res.data)
      if (err.code === 'invalid_login_code' && attempt < 2) continue
      if (err.code === 'user_banned' && options.onBanned) options.onBanned(err)
      throw err
    }
  }

  function login() {
    if (!loggingIn) {
      loggingIn = doLogin().finally(() => {
        loggingIn = null
      })
    }
    return loggingIn
  }

  /** A read that fails on a weak network is tried once more after a moment (a read changes nothing). */
  async function sendWithRetry(method, path, body, query) {
    try {
      return await send(method, path, body, query)
    } catch (err) {
      if (method !== 'GET') throw err
      await new Promise(resolve => setTimeout(resolve, READ_RETRY_MS))
      return send(method, path, body, query)
    }
  }

  async function request(method, path, body, opts) {
    const o = opts || {}
    if (!token && !o.noAuth) await login()
    let res = await sendWithRetry(method, path, body, o.query)
    if (res.statusCode === 401 && !o.noAuth) {
      // The token expired or was revoked: renew it silently and repeat the call once.
      await renew()
      res = await send(method, path, body, o.query)
    }
    if (res.statusCode >= 200 && res.statusCode < 300) {
      onResponse(res.data)
      return res.data
    }
    const err = errorFrom(res.statusCode, res.data)
    if (err.code === 'user_banned' && options.onBanned) options.onBanned(err)
    throw err
  }

  /** Upload a local image (multipart field "file"); onProgress(0..100). Resolves with {ref, ...}. */
  async function upload(filePath, onProgress) {
    if (!token) await login()
    const attempt = () =>
      new Promise((resolve, reject) => {
        const task = wx.uploadFile({
          url: url('/uploads'),
          filePath,
          name: 'file',
          header: header(),
          timeout: 60000,
          success: res => resolve(res),
          fail: () => reject(new ApiError('upload_failed', 0)),
        })
        if (task && typeof task.onProgressUpdate === 'function' && onProgress) {
          task.onProgressUpdate(p => onProgress(p.progress))
        }
      })
    let res = await attempt()
    if (res.statusCode === 401) {
      await renew()
      res = await attempt()
    }
    const data = typeof res.data === 'string' ? safeJson(res.data) : res.data
    if (res.statusCode >= 200 && res.statusCode < 300 && data) return data
    const err = errorFrom(res.statusCode, data)
    if (err.code === 'user_banned' && options.onBanned) options.onBanned(err)
    throw err
  }

  /**
   * A path an <image> can show for an uploaded image: the signed URL when the view carries one,
   * else the image downloaded with the session token into a temporary file.
   */
  async function imageSrc(ref, signedUrl) {
    if (signedUrl) return /^https?:/.test(signedUrl) ? signedUrl : `${baseUrl}${signedUrl}`
    if (!ref) return ''
    return download(`/uploads/${encodeURIComponent(ref)}`)
  }

  /** GET a file (an image) with the session token into a temporary file; resolves with its path. */
  async function download(path) {
    if (!token) await login()
    const fetchOnce = () =>
      wxCall('downloadFile', { url: url(path), header: header() }).catch(() => {
        throw new ApiError('network_error', 0)
      })
    let res = await fetchOnce()
    if (res.statusCode === 401) {
      await renew()
      res = await fetchOnce()
    }
    if (res.statusCode !== 200) throw errorFrom(res.statusCode, null)
    return res.tempFilePath
  }

  return {
    end,
    baseUrl,
    login,
    renew,
    /** End every session of this account on this Mini Program (every phone), then forget the tokens. */
    async logout() {
      try {
        await request('POST', '/logout', {})
      } finally {
        setToken('')
        setRefreshToken('')
      }
    },
    // get/post/patch/put/del take their path, body and answer types from types/client.d.ts `Api`.
    request,
    upload,
    imageSrc,
    download,
    get: /** @type {any} */ ((path, query) => request('GET', path, undefined, { query })),
    post: /** @type {any} */ ((path, body) => request('POST', path, body === undefined ? {} : body)),
    patch: /** @type {any} */ ((path, body) => request('PATCH', path, body)),
    put: /** @type {any} */ ((path, body) => request('PUT', path, body)),
    del: /** @type {any} */ (path => request('DELETE', path)),
    token: () => token,
    user: () => user,
    setToken,
    /** The scene of a shared card or Mini Program code: bound at the first login only. */
    rememberInvite(scene) {
      if (scene) pendingInvite = String(scene)
    },
    wsUrl() {
      return `${baseUrl.replace(/^http/, 'ws')}/api/v1/ws`
    },
  }
}

/** A client-chosen idempotency key for a money movement (recharge, withdrawal, publish). */
function requestId(prefix) {
  const rand = Math.random().toString(36).slice(2, 10)
  return `${prefix || 'r'}-${Date.now().toString(36)}-${rand}`
}

module.exports = { createApi, requestId, toQuery, TOKEN_KEY, REFRESH_KEY }
