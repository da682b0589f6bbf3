'use strict'
// The API client: tokens, silent renewal (refresh token, then wx.login), errors as Chinese text.
const test = require('node:test')
const assert = require('node:assert')
const { createFakeWx, err } = require('../helpers/fake-wx')
const { createApi } = require('../../shared/api')

function setup(routes) {
  global.wx = createFakeWx({ end: 'publisher', routes })
  const banned = []
  const api = createApi({ end: 'publisher', baseUrl: 'http://test.local', onBanned: e => banned.push(e.code) })
  return { api, banned }
}

test('the first call logs in with wx.login, binds a remembered invite scene once, and sends the token', async () => {
  const logins = []
  const { api } = setup({
    'POST /login': req => {
      logins.push(req.body)
      return { token: 'a1', refresh_token: 'r1', user: { id: 3 } }
    },
    'GET /wallet': req => ({ available_fen: req.header.Authorization === 'Bearer a1' ? 1 : 0 }),
  })
  api.rememberInvite('K7Q2MX')
  assert.deepStrictEqual(await api.get('/wallet'), { available_fen: 1 })
  assert.deepStrictEqual(logins, [{ code: logins[0].code, scene: 'K7Q2MX' }])
  assert.strictEqual(wx.getStorageSync('session.refresh'), 'r1')
  assert.strictEqual(wx.requests[1].header['Accept-Language'], 'zh-CN')
})

test('an expired access token is renewed with the refresh token (used once) and the call repeated', async () => {
  let logins = 0
  const refreshes = []
  const { api } = setup({
    'POST /login': () => ({ token: `login-${++logins}`, refresh_token: 'r1', user: { id: 3 } }),
    'POST /refresh': req => {
      refreshes.push(req.body.refresh_token)
      return req.body.refresh_token === 'r1' ? { token: 'a2', refresh_token: 'r2', user: { id: 3 } } : err(401, 'refresh_token_invalid')
    },
    'GET /tasks': req => (req.header.Authorization === 'Bearer login-1' ? err(401, 'token_expired') : { items: [], next_cursor: null }),
  })
  await api.get('/tasks')
  assert.deepStrictEqual(refreshes, ['r1'])
  assert.strictEqual(logins, 1)
  assert.strictEqual(api.token(), 'a2')
  assert.strictEqual(wx.getStorageSync('session.refresh'), 'r2')
})

test('a refused refresh (session ended) falls back to a silent wx.login', async () => {
  let logins = 0
  const { api } = setup({
    'POST /login': () => ({ token: `login-${++logins}`, refresh_token: `r${logins}`, user: { id: 3 } }),
    'POST /refresh': () => err(401, 'refresh_token_invalid'),
    'GET /me': req => (req.header.Authorization === 'Bearer login-2' ? { id: 3 } : err(401, 'unauthorized')),
  })
  await api.get('/me')
  assert.strictEqual(logins, 2)
})

test('errors carry a stable code and a Chinese text; a ban is reported; the network failing is its own code', async () => {
  const { api, banned } = setup({
    'POST /login': () => ({ token: 'a1', user: { id: 3 } }),
    'POST /tasks': () => err(400, 'insufficient_balance'),
    'GET /wallet': () => err(403, 'user_banned', { reason: '刷单' }),
    'GET /ledger': () => ({ networkError: true }),
    'GET /me': () => ({ status: 502, body: '<html>bad gateway</html>' }),
  })
  await assert.rejects(api.post('/tasks', {}), e => e.code === 'insufficient_balance' && e.text === '余额不足，请先充值' && e.status === 400)
  await assert.rejects(api.get('/wallet'), e => e.code === 'user_banned' && e.details.reason === '刷单')
  assert.deepStrictEqual(banned, ['user_banned'])
  await assert.rejects(api.get('/ledger'), e => e.code === 'network_error' && e.text === '网络不给力，请检查网络后重试')
  await assert.rejects(api.get('/me'), e => e.status === 502 && e.text === '服务器开小差了，请稍后再试')
})

test('a read that fails once on a weak network is tried again; a change is never sent twice by itself', async () => {
  let reads = 0
  let writes = 0
  const { api } = setup({
    'POST /login': () => ({ token: 'a1', user: { id: 3 } }),
    'GET /wallet': () => (++reads === 1 ? { networkError: true } : { available_fen: 5 }),
    'POST /withdrawals': () => (++writes, { networkError: true }),
  })
  assert.deepStrictEqual(await api.get('/wallet'), { available_fen: 5 })
  assert.strictEqual(reads, 2)
  await assert.rejects(api.post('/withdrawals', { amount_fen: 1000, request_id: 'w-1' }), e => e.code === 'network_error')
  assert.strictEqual(writes, 1)
})

test('a login code WeChat already used is replaced by a fresh one', async () => {
  const codes = []
  const { api } = setup({
    'POST /login': req => {
      codes.push(req.body.code)
      return codes.length === 1 ? err(400, 'invalid_login_code') : { token: 'a1', user: { id: 3 } }
    },
  })
  await api.login()
  assert.strictEqual(codes.length, 2)
  assert.notStrictEqual(codes[0], codes[1])
})

test('logout ends the sessions on the server and forgets both tokens', async () => {
  const { api } = setup({ 'POST /login': () => ({ token: 'a1', refresh_token: 'r1', user: { id: 3 } }), 'POST /logout': () => ({ status: 204, body: '' }) })
  await api.login()
  await api.logout()
  assert.strictEqual(api.token(), '')
  assert.strictEqual(wx.getStorageSync('session.refresh'), '')
})
