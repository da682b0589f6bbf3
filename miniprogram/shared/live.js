// The WebSocket both apps keep open (docs/api.md, "Live updates"; design: docs/push.md). It
// reconnects with full-jitter exponential backoff and resumes in the handshake from the `seq` of the
// last event it processed (`?after_seq=N`: the server replays everything after it, then live), and
// drops an event it has already seen (by id: the same event always has the same id), so a page sees
// each event once however the connection breaks. After every reconnect it tells pages
// `reconnected`: they reload what they show by REST, so whatever happened while the phone was away
// is on screen exactly as the server has it. A node that is busy (after another node went away,
// thousands of phones reconnect at once) refuses the handshake with 503 and Retry-After: we wait
// at least that long, plus a random part up to as long again.

const CONTROL = { welcome: 1, resumed: 1, replay_truncated: 1, pong: 1, heartbeat: 1, error: 1 }
const PING_MS = 20000
const SILENCE_MS = 60000 // no message at all for this long: the connection is dead, reconnect
const BACKOFF_MIN_MS = 500
const BACKOFF_MAX_MS = 30000
const SEEN_MAX = 5000
const BUSY_DEFAULT_S = 5 // a 503 without a readable Retry-After
const BUSY_MAX_S = 60

/**
 * The seconds a busy server asked us to wait (`503 server_busy` with `Retry-After`), from what the
 * platform tells us about a refused handshake (statusCode/header when it gives them, else an
 * errMsg naming the status); null when the failure was not a busy answer.
 * @param {any} res
 */
function busyRetryAfterS(res) {
  if (!res || typeof res !== 'object') return null
  const header = res.header || res.headers || {}
  let retryAfter = null
  for (const key of Object.keys(header)) {
    if (key.toLowerCase() === 'retry-after') retryAfter = Number(header[key])
  }
  const msg = typeof res.errMsg === 'string' ? res.errMsg : ''
  const status = Number(res.statusCode) || (/\b503\b/.test(msg) ? 503 : 0)
  if (retryAfter === null || !isFinite(retryAfter)) {
    const m = /retry-after\D{0,3}(\d+)/i.exec(msg)
    retryAfter = m ? Number(m[1]) : null
  }
  if (status !== 503 && retryAfter === null) return null
  if (retryAfter === null || !isFinite(retryAfter) || retryAfter < 1) retryAfter = BUSY_DEFAULT_S
  return Math.min(BUSY_MAX_S, retryAfter)
}

/**
 * @param {{api: any, clock: any, backoffMinMs?: number, backoffMaxMs?: number, random?: () => number,
 *          onRetryDelay?: (ms: number) => void}} options
 */
function createLive(options) {
  const { api, clock } = options
  const backoffMin = options.backoffMinMs || BACKOFF_MIN_MS
  const backoffMax = options.backoffMaxMs || BACKOFF_MAX_MS
  const random = options.random || Math.random
  const listeners = {}
  const seen = new Set()
  const seenOrder = []
  let task = null
  let wanted = false
  let failures = 0
  let everConnected = false
  let lastSeq = null // our place in the server's delivery log: every event of ours up to it was processed
  let retryTimer = null
  let pingTimer = null
  let lastMessageAt = 0
  let lastBusy = false // the last failure was a busy server's answer (not a refused token)
  let state = 'idle'

  function emit(type, payload) {
    ;(listeners[type] || []).slice().forEach(fn => safe(fn, payload))
    if (type.indexOf('.') > 0) (listeners['*'] || []).slice().forEach(fn => safe(fn, payload))
  }

  function safe(fn, payload) {
    try {
      fn(payload)
    } catch (e) {
      console.error('live listener failed', e)
    }
  }

  function setState(next) {
    state = next
    emit('state', next)
  }

  function remember(id) {
    seen.add(id)
    seenOrder.push(id)
    if (seenOrder.length > SEEN_MAX) seen.delete(seenOrder.shift())
  }

  function sendJson(message) {
    if (task) task.send({ data: JSON.stringify(message) })
  }

  function onMessage(raw) {
    lastMessageAt = Date.now()
    let msg
    try {
      msg = JSON.parse(typeof raw.data === 'string' ? raw.data : '')
    } catch (e) {
      return
    }
    if (!msg || typeof msg.type !== 'string') return
    if (msg.now && clock) clock.sync(msg.now)
    if (!CONTROL[msg.type]) {
      if (typeof msg.id !== 'number') return
      // On one socket seqs only grow (the replay comes before anything live): the position follows.
      if (typeof msg.seq === 'number' && (lastSeq === null || msg.seq > lastSeq)) lastSeq = msg.seq
      if (seen.has(msg.id)) return
      remember(msg.id)
      emit(msg.type, msg)
      return
    }
    if (msg.type === 'welcome') {
      failures = 0
      if (lastSeq === null) {
        // First connection: start from now; what came before is loaded by REST.
        lastSeq = typeof msg.last_seq === 'number' ? msg.last_seq : null
        setState('open')
        everConnected = true
        emit('connected', msg)
      } else {
        setState('resuming') // we asked for ?after_seq=: the replay follows, then `resumed`
      }
    } else if (msg.type === 'resumed') {
      if (typeof msg.last_seq === 'number' && msg.last_seq > lastSeq) lastSeq = msg.last_seq
      setState('open')
      emit('reconnected', msg)
    } else if (msg.type === 'replay_truncated') {
      // What was missed is no longer kept: pages reload by REST, the server's position becomes
      // ours and live events follow on this socket (never a second resume: no replay loop).
      if (typeof msg.last_seq === 'number') lastSeq = msg.last_seq
      // The ids remembered belong to the history that is gone (a restored database may reuse them):
      // nothing on this socket repeats, so forgetting them drops nothing new.
      seen.clear()
      seenOrder.length = 0
      setState('open')
      emit('reconnected', msg)
    } else if (msg.type === 'heartbeat' && typeof msg.last_seq === 'number' && lastSeq !== null && msg.last_seq > lastSeq) {
      // Every event for us up to this position came before the heartbeat: a safe place to resume from.
      lastSeq = msg.last_seq
    } else if (msg.type === 'error' && msg.code === 'session_ended') {
      // Banned or logged out elsewhere: ask the API who we are (it logs in again or shows the ban).
      api.get('/me').catch(() => {})
    }
  }

  function clearTimers() {
    if (pingTimer) clearInterval(pingTimer)
    pingTimer = null
    if (retryTimer) clearTimeout(retryTimer)
    retryTimer = null
  }

  function onGone(res) {
    if (pingTimer) clearInterval(pingTimer)
    pingTimer = null
    task = null
    if (!wanted) {
      setState('idle')
      return
    }
    setState('reconnecting')
    failures += 1
    const busyS = busyRetryAfterS(res)
    lastBusy = busyS !== null
    let delay
    if (busyS !== null) {
      // A busy node (docs/api.md, "Reconnecting"): never before Retry-After, then spread over as
      // long again, so the phones it turned away do not all come back in the same second.
      delay = Math.round(busyS * 1000 * (1 + random()))
    } else {
      // "Full jitter" (docs/api.md): thousands of phones whose server went away must not all come
      // back in the same instant.
      const ceiling = Math.min(backoffMax, backoffMin * Math.pow(2, failures - 1))
      delay = Math.round(ceiling * random())
    }
    if (options.onRetryDelay) options.onRetryDelay(delay)
    retryTimer = setTimeout(reconnect, delay)
  }

  async function reconnect() {
    retryTimer = null
    if (!wanted) return
    if (failures > 1 && !lastBusy) {
      // Repeated failures may be a refused handshake (expired token): a REST call renews the
      // session if needed (and sends a banned user to the banned screen). Not after a busy
      // answer: the token was never looked at, and a storm needs no extra requests.
      try {
        await api.get('/me')
      } catch (e) {
        if (e && e.code === 'user_banned') {
          wanted = false
          setState('idle')
          return
        }
      }
    }
    open()
  }

  async function open() {
    if (!wanted || task) return
    if (!api.token()) {
      try {
        await api.login()
      } catch (e) {
        onGone()
        return
      }
    }
    setState('connecting')
    let current
    try {
      const url = api.wsUrl()
      const resumeFrom = lastSeq === null ? '' : `${url.indexOf('?') < 0 ? '?' : '&'}after_seq=${lastSeq}`
      current = wx.connectSocket({ url: url + resumeFrom, header: { Authorization: `Bearer ${api.token()}` }, timeout: 10000 })
    } catch (e) {
      onGone()
      return
    }
    task = current
    let gone = false
    const finish = res => {
      if (gone || task !== current) return
      gone = true
      onGone(res)
    }
    current.onOpen(() => {
      lastMessageAt = Date.now()
      pingTimer = setInterval(() => {
        if (Date.now() - lastMessageAt > SILENCE_MS) {
          try {
            current.close({})
          } catch (e) {
            /* already gone */
          }
          finish()
        } else sendJson({ type: 'ping' })
      }, PING_MS)
    })
    current.onMessage(raw => {
      if (task === current) onMessage(raw)
    })
    current.onClose(finish)
    current.onError(finish)
  }

  return {
    start() {
      if (wanted) return
      wanted = true
      open()
    },
    stop() {
      wanted = false
      clearTimers()
      const t = task
      task = null
      if (t) {
        try {
          t.close({})
        } catch (e) {
          /* already closed */
        }
      }
      setState('idle')
    },
    /** The app came to the foreground: retry at once instead of waiting out the backoff. */
    wake() {
      if (!wanted || task) return
      if (retryTimer) clearTimeout(retryTimer)
      retryTimer = null
      open()
    },
    /** listen to an event type ('hall.task_published', '*', 'connected', 'reconnected', 'state'); returns the unsubscribe */
    on(type, fn) {
      ;(listeners[type] = listeners[type] || []).push(fn)
      return () => {
        listeners[type] = (listeners[type] || []).filter(f => f !== fn)
      }
    },
    get state() {
      return state
    },
    /** the seq this socket resumes after (docs/api.md) */
    get lastSeq() {
      return lastSeq
    },
    get everConnected() {
      return everConnected
    },
  }
}

module.exports = { createLive, busyRetryAfterS }
