'use strict'
// The live socket: resume after the last processed seq, drop duplicates by id, reconnect with backoff.
const test = require('node:test')
const assert = require('node:assert')
const { createFakeWx } = require('../helpers/fake-wx')
const { waitFor } = require('../helpers/harness')
const { createApi } = require('../../shared/api')
const { createLive } = require('../../shared/live')
const { createClock } = require('../../shared/time')

function setup(routes, t, options = {}) {
  global.wx = createFakeWx(Object.assign({ end: 'worker', routes }, options))
  wx.setStorageSync('session.token', 'token-1')
  const clock = createClock()
  const api = createApi({ end: 'worker', baseUrl: 'http://test.local', clock })
  const live = createLive({ api, clock, backoffMinMs: 10, backoffMaxMs: 40, random: () => 0.999 })
  const seen = []
  live.on('*', e => seen.push(e.id))
  t.after(() => live.stop())
  return { live, seen, api }
}

test('the socket sends the token, starts from the welcome position and hands each event to listeners once', async t => {
  const { live, seen } = setup({}, t)
  live.start()
  await waitFor(() => live.state === 'open', 'open')
  assert.strictEqual(wx.sockets[0].options.header.Authorization, 'Bearer token-1')
  assert.strictEqual(wx.sockets[0].options.url, 'ws://test.local/api/v1/ws')
  const id = wx.push('wallet.changed', { reason: 'recharge', amount_fen: 100 })
  wx.sockets[0].serverSend({ id, type: 'wallet.changed', data: {} }) // the same event again (live and replay)
  await waitFor(() => seen.length === 1, 'one event')
  assert.deepStrictEqual(seen, [id])
  live.stop()
})

test('after a drop it reconnects with the seq it had, and skips an event it already had', async t => {
  const { live, seen } = setup({}, t)
  const reconnected = []
  live.on('reconnected', () => reconnected.push(1))
  live.start()
  await waitFor(() => live.state === 'open', 'open')
  const first = wx.push('order.changed', { order_id: 1 })
  await waitFor(() => seen.length === 1)
  wx.sockets[0].serverDrop()
  await waitFor(() => wx.sockets.length === 2 && live.state === 'resuming', 'reconnected, resuming')
  assert.strictEqual(wx.sockets[1].options.url, `ws://test.local/api/v1/ws?after_seq=${first}`)
  assert.deepStrictEqual(wx.sockets[1].sent, [], 'the resume is in the handshake, no message')
  // The replay: the two it missed (and, after a message resume, an event it had: dropped by id).
  const s = wx.sockets[1]
  s.serverSend({ id: first, seq: first, type: 'order.changed', data: {} })
  s.serverSend({ id: 900, seq: first + 1, type: 'order.changed', data: {} })
  s.serverSend({ id: 42, seq: first + 2, type: 'wallet.changed', data: {} }) // ids need not grow; seqs do
  s.serverSend({ type: 'resumed', last_seq: first + 2 })
  await waitFor(() => reconnected.length === 1, 'reconnected')
  assert.deepStrictEqual(seen, [first, 900, 42])
  assert.strictEqual(live.lastSeq, first + 2)
  live.stop()
})

test('a truncated replay makes pages reload, takes the server position and never asks again (no replay loop)', async t => {
  const { live, seen } = setup({}, t)
  const reconnected = []
  live.on('reconnected', () => reconnected.push(1))
  live.start()
  await waitFor(() => live.state === 'open')
  const last = wx.push('order.changed', {})
  wx.sockets[0].serverDrop()
  await waitFor(() => wx.sockets.length === 2 && live.state === 'resuming')
  wx.sockets[1].serverSend({ type: 'replay_truncated', last_seq: last - 50 })
  await waitFor(() => reconnected.length === 1)
  assert.strictEqual(wx.sockets[1].sent.length, 0, 'no resume message at all')
  assert.strictEqual(live.state, 'open')
  assert.strictEqual(live.lastSeq, last - 50)
  wx.sockets[1].serverSend({ type: 'heartbeat', now: new Date().toISOString(), last_seq: last + 7 })
  await waitFor(() => live.lastSeq === last + 7, 'the heartbeat position kept')
  // The history before the truncation is gone (a restored database may hand its ids out again):
  // an event with an id seen before it is a new event, not a repeat.
  wx.sockets[1].serverSend({ id: last, seq: last + 8, type: 'order.changed', data: {} })
  await waitFor(() => seen.filter(id => id === last).length === 2, 'the reused id delivered')
  live.stop()
})

test('repeated refusals renew the session by REST before trying again, with growing delays', async t => {
  let logins = 0
  const { live } = setup({ 'POST /login': () => ({ token: `token-${++logins + 1}`, user: { id: 1 } }) }, t, { autoWelcome: false })
  let meCalls = 0
  wx.route('GET /me', req => (++meCalls && req.header.Authorization === 'Bearer token-1' ? { status: 401, body: { error: { code: 'token_expired' } } } : { id: 1 }))
  global.wx.connectSocket = (orig => o => {
    const s = orig(o)
    setTimeout(() => {
      // The handshake with the old token is refused (401 before the socket opens).
      if (o.header.Authorization === 'Bearer token-1') return s.serverDrop()
      s.serverOpen()
      s.serverSend({ type: 'welcome', last_seq: 5, now: new Date().toISOString() })
    }, 0)
    return s
  })(global.wx.connectSocket)
  live.start()
  await waitFor(() => live.state === 'open', 'open with a renewed token', 3000)
  assert.ok(meCalls >= 1)
  assert.strictEqual(logins, 1)
  assert.strictEqual(wx.sockets[wx.sockets.length - 1].options.header.Authorization, 'Bearer token-2')
  live.stop()
})

test('while the server stays away, retries wait a random time under a ceiling that doubles up to the maximum', async t => {
  global.wx = createFakeWx({ end: 'worker', autoWelcome: false })
  wx.setStorageSync('session.token', 'token-1')
  const clock = createClock()
  const api = createApi({ end: 'worker', baseUrl: 'http://test.local', clock })
  const delays = []
  const draws = [0.5, 1, 0.25, 1, 1, 0]
  const live = createLive({ api, clock, backoffMinMs: 4, backoffMaxMs: 32, random: () => draws[delays.length % draws.length], onRetryDelay: ms => delays.push(ms) })
  t.after(() => live.stop())
  const orig = wx.connectSocket
  wx.connectSocket = o => {
    const s = orig(o)
    setTimeout(() => s.serverDrop(), 0) // refused every time
    return s
  }
  wx.route('GET /me', () => ({ id: 1 }))
  live.start()
  await waitFor(() => delays.length >= 6, 'six retries')
  // ceilings 4, 8, 16, 32, 32, 32 ms × the random draw ("full jitter")
  assert.deepStrictEqual(delays.slice(0, 6), [2, 8, 4, 32, 32, 0])
})

test('a busy server (503 with Retry-After) is not asked again before Retry-After, then within as long again', async t => {
  global.wx = createFakeWx({ end: 'worker', autoWelcome: false })
  wx.setStorageSync('session.token', 'token-1')
  const clock = createClock()
  const api = createApi({ end: 'worker', baseUrl: 'http://test.local', clock })
  const delays = []
  const draws = [0, 1, 0.5]
  const live = createLive({ api, clock, backoffMinMs: 4, backoffMaxMs: 32, random: () => draws[delays.length % draws.length], onRetryDelay: ms => delays.push(ms) })
  t.after(() => live.stop())
  let meCalls = 0
  wx.route('GET /me', () => ++meCalls && { id: 1 })
  live.start()
  await waitFor(() => wx.sockets.length === 1, 'first attempt')
  wx.sockets[0].serverBusy(7)
  await waitFor(() => delays.length === 1, 'one delay')
  assert.strictEqual(delays[0], 7000) // Retry-After × (1 + 0)
  assert.strictEqual(live.state, 'reconnecting')
  live.wake() // the app comes to the foreground: try now
  await waitFor(() => wx.sockets.length === 2, 'second attempt')
  wx.sockets[1].serverBusy(3, 'errMsg only') // a platform that reports only the status: a default wait
  await waitFor(() => delays.length === 2, 'two delays')
  assert.strictEqual(delays[1], 10000) // 5 s (no readable Retry-After) × (1 + 1)
  live.wake()
  await waitFor(() => wx.sockets.length === 3, 'third attempt')
  assert.strictEqual(meCalls, 0, 'a busy answer is no refused token: no REST call')
  wx.sockets[2].serverDrop() // an ordinary failure: the full-jitter backoff again
  await waitFor(() => delays.length === 3, 'three delays')
  assert.ok(delays[2] <= 32, `full jitter after a plain drop, got ${delays[2]}`)
})

test('busyRetryAfterS reads Retry-After from a refused handshake, whatever the platform gives', () => {
  const { busyRetryAfterS } = require('../../shared/live')
  assert.strictEqual(busyRetryAfterS({ statusCode: 503, header: { 'retry-after': '12' } }), 12)
  assert.strictEqual(busyRetryAfterS({ errMsg: 'connectSocket:fail Unexpected server response: 503' }), 5)
  assert.strictEqual(busyRetryAfterS({ errMsg: 'fail 503 Retry-After: 9' }), 9)
  assert.strictEqual(busyRetryAfterS({ statusCode: 503, header: { 'Retry-After': '3600' } }), 60)
  assert.strictEqual(busyRetryAfterS({ code: 1006 }), null)
  assert.strictEqual(busyRetryAfterS({ errMsg: 'connectSocket:fail network down' }), null)
  assert.strictEqual(busyRetryAfterS(undefined), null)
})
