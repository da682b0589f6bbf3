'use strict'
const test = require('node:test')
const assert = require('node:assert')
const path = require('path')
const fs = require('fs')
const money = require('../../shared/money')
const time = require('../../shared/time')
const { MESSAGES, errorText } = require('../../shared/errors')

test('fen are shown as yuan with two decimals, never as floats', () => {
  assert.strictEqual(money.yuan(1230), '12.30')
  assert.strictEqual(money.yuan(5), '0.05')
  assert.strictEqual(money.yuan(-1005), '-10.05')
  assert.strictEqual(money.yuanText(100000), '¥1000.00')
  assert.strictEqual(money.yuanText(-50), '-¥0.50')
  assert.strictEqual(money.signedYuan(990), '+9.90')
  assert.strictEqual(money.signedYuan(-990), '-9.90')
  assert.strictEqual(money.yuan(1.5), '—')
  assert.strictEqual(money.yuan(undefined), '—')
})

test('what a person types in yuan becomes whole fen, or null', () => {
  assert.strictEqual(money.parseYuan('12'), 1200)
  assert.strictEqual(money.parseYuan('12.3'), 1230)
  assert.strictEqual(money.parseYuan(' ¥0.07 '), 7)
  assert.strictEqual(money.parseYuan('0.1'), 10) // 0.1 + 0.2 problems never arise: strings, not floats
  for (const bad of ['', 'abc', '1.234', '-1', '1e3', '12.']) {
    assert.strictEqual(money.parseYuan(bad), bad === '12.' ? 1200 : null, bad)
  }
})

test('fees round down like the server (floor of basis points)', () => {
  assert.strictEqual(money.basisPoints(1999, 1000), 199)
  assert.strictEqual(money.basisPoints(1000, 100), 10)
  assert.strictEqual(money.percentText(1000), '10%')
  assert.strictEqual(money.percentText(250), '2.5%')
  assert.strictEqual(money.percentText(5), '0.05%')
})

test('times are shown in Beijing time whatever the phone zone', () => {
  assert.strictEqual(time.beijing('2026-11-25T18:52:42Z'), '2026-11-26 02:52')
  assert.strictEqual(time.beijing('2026-11-25T18:52:42.5+00:00', { year: false, seconds: true }), '11-26 02:52:42')
  assert.strictEqual(time.beijing(null), '')
  assert.strictEqual(time.countdownText(65000), '01:05')
  assert.strictEqual(time.countdownText(3725000), '1:02:05')
  assert.strictEqual(time.countdownText(-5), '00:00')
  assert.strictEqual(time.durationText(300), '5分钟')
  assert.strictEqual(time.durationText(90), '1分30秒')
})

test('countdowns run on the server clock, not the phone clock', () => {
  const clock = time.createClock()
  const serverNow = Date.now() + 3600 * 1000 // the phone is an hour slow
  clock.sync(new Date(serverNow).toISOString())
  const deadline = new Date(serverNow + 60000).toISOString()
  const left = clock.remainingMs(deadline)
  assert.ok(left > 59000 && left <= 60000, `remaining ${left}`)
  assert.strictEqual(clock.remainingMs(new Date(serverNow - 1000).toISOString()), 0)
})

test('every error code the server can send has a Chinese text', () => {
  // The codes come from the server's error classes (models/, server/, miniprogram_api/, wechat/).
  const repo = path.resolve(__dirname, '../../..')
  const codes = new Set()
  for (const dir of ['models', 'server', 'miniprogram_api', 'wechat']) {
    for (const file of walk(path.join(repo, dir))) {
      const text = fs.readFileSync(file, 'utf8')
      for (const m of text.matchAll(/code(?:, status)?(?:, message)? = "([a-z_]+)"/g)) codes.add(m[1])
    }
  }
  // ...and from the error catalog (docs/errors.json), when this checkout has it.
  const catalog = path.join(repo, 'docs/errors.json')
  if (fs.existsSync(catalog)) JSON.parse(fs.readFileSync(catalog, 'utf8')).errors.forEach(e => codes.add(e.code))
  // The operators' panel's and WeChat callbacks' own codes (NOT_FOR_THE_APPS in miniprogram_api/error_catalog.py).
  const adminOnly = new Set(['error', 'bad_credentials', 'login_locked', 'invalid_settings', 'transaction_id_reused',
    'payout_not_held', 'payout_still_at_wechat', 'payout_check_under_way'])
  const missing = [...codes].filter(c => !adminOnly.has(c) && !MESSAGES[c])
  assert.deepStrictEqual(missing, [])
  for (const text of Object.values(MESSAGES)) assert.match(text, /[\u4e00-\u9fa5]/)
  assert.strictEqual(errorText({ code: 'something_new', status: 409 }), '操作失败，请稍后再试')
  // numbers from the details, money in yuan
  assert.strictEqual(errorText({ code: 'price_out_of_range', details: { min_fen: 100, max_fen: 10000 } }), '单价须在 ¥1.00 ~ ¥100.00 之间')
  assert.strictEqual(errorText({ code: 'withdrawal_out_of_range', details: { min_fen: 1000, max_fen: 2505 } }), '提现金额须在 ¥10.00 ~ ¥25.05 之间')
  assert.strictEqual(errorText({ code: 'daily_withdrawal_cap', details: { cap_fen: 500000 } }), '已超过今日提现额度 ¥5000.00，请明天再试')
  assert.strictEqual(errorText({ code: 'rate_limited', details: { retry_after_s: 7 } }), '操作太频繁，请 7 秒后再试')
  assert.strictEqual(errorText({ code: 'price_out_of_range', details: {} }), '单价不在允许的范围内')
  assert.strictEqual(errorText({ code: 'appeals_paused', details: { streak: 3, until: '2026-12-01T02:30:00Z' } }),
    '你最近 3 次申诉均未成功，2026-12-01 10:30（北京时间）之后才能再次申诉')
  assert.strictEqual(errorText({ code: 'appeals_paused', details: { until: '2026-12-01T02:30:00Z' } }), '申诉已暂停，2026-12-01 10:30（北京时间）之后才能再次申诉')
  assert.strictEqual(errorText({ code: 'prohibited_content', details: { term: '刷票', category: 'paid_votes', category_zh: '有偿投票', field: 'title' } }),
    '任务内容包含平台禁止的“刷票”（有偿投票），请修改后再发布')
  assert.strictEqual(errorText({ code: 'something_new', status: 409, serverMessage: '新的限制：请明天再试。' }), '新的限制：请明天再试。')
  assert.strictEqual(errorText({ code: 'something_new', status: 409, serverMessage: 'A new rule applies.' }), '操作失败，请稍后再试')
  assert.strictEqual(errorText({ code: 'http_502', status: 502 }), '服务器开小差了，请稍后再试')
})

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.py') ? [path.join(dir, e.name)] : []))
}
