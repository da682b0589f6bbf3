'use strict'
// The shared components alone (rendered in the worker app; the publisher's copy is the same file).
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')

test('countdown counts down against the server clock and fires expire once at zero', async t => {
  const app = setupApp('worker', { start: false })
  t.after(app.close)
  app.ctx.clock.sync(new Date(Date.now() + 7200 * 1000).toISOString()) // the phone is two hours slow
  const serverNow = app.ctx.clock.now()
  const c = app.mount('shared/components/countdown/countdown', { deadline: new Date(serverNow + 1500).toISOString(), label: '剩余' })
  const expired = []
  c.instance.triggerEvent = (name) => expired.push(name)
  assert.match(c.text(), /^剩余 00:0[12]$/)
  let ticks = 0
  const tick = c.instance.tick.bind(c.instance)
  c.instance.tick = reset => (ticks++, tick(reset))
  await c.waitFor(() => /已截止/.test(c.text()), 'zero', 4000)
  const seen = ticks
  await c.waitFor(() => ticks >= seen + 2, 'two more ticks after zero', 4000)
  assert.deepStrictEqual(expired, ['expire'])
  c.comp.setData({ deadline: new Date(serverNow + 90 * 60 * 1000).toISOString() })
  await c.waitFor(() => /^剩余 1:(29|30):\d\d$/.test(c.text()), 'long countdown')
})

test('page-state shows loading, an error with a retry button, and the empty text', async t => {
  const app = setupApp('worker', { start: false })
  t.after(app.close)
  const s = app.mount('shared/components/page-state/page-state', { state: 'loading' })
  assert.strictEqual(s.text(), '加载中…')
  s.comp.setData({ state: 'error', errorText: '网络不给力，请检查网络后重试' })
  assert.strictEqual(s.text(), '网络不给力，请检查网络后重试 重新加载')
  let retried = 0
  s.comp.addEventListener('retry', () => retried++)
  s.tap('.retry')
  await s.waitFor(() => retried === 1, 'retry event')
  s.comp.setData({ state: 'empty', emptyText: '暂无订单' })
  assert.strictEqual(s.text(), '暂无订单')
  s.comp.setData({ state: 'ready' })
  assert.strictEqual(s.text(), '')
})

test('live-status appears while the connection is down and goes when it is back', async t => {
  const app = setupApp('worker', { liveOptions: { backoffMinMs: 60000, backoffMaxMs: 60000, random: () => 1 } })
  t.after(app.close)
  const strip = app.mount('shared/components/live-status/live-status')
  await strip.waitFor(() => app.ctx.live.state === 'open', 'open')
  assert.strictEqual(strip.text(), '')
  app.wx.sockets[0].serverDrop()
  await strip.waitFor(() => strip.text() === '网络连接中断，正在重新连接…', 'offline strip')
  // The backoff is a minute here: the network coming back is what reconnects at once.
  app.wx.networkListeners.forEach(fn => fn({ isConnected: true, networkType: 'wifi' }))
  await strip.waitFor(() => app.ctx.live.state === 'open' && strip.text() === '', 'back online')
})

test('secure-image shows a signed URL as it is, or downloads the image with the token; a failure offers a retry', async t => {
  const app = setupApp('worker')
  t.after(app.close)
  const signed = app.mount('shared/components/secure-image/secure-image', { imageRef: 'a', url: 'https://cdn.example.com/a?sig=1' })
  await signed.waitFor(() => signed.comp.data.src === 'https://cdn.example.com/a?sig=1')
  const plain = app.mount('shared/components/secure-image/secure-image', { imageRef: 'b1' })
  await plain.waitFor(() => plain.comp.data.src === '/tmp/download-b1.png')
  assert.strictEqual(app.wx.called('downloadFile')[0].header.Authorization, 'Bearer token-1')
  // A signed URL that expired while the page stayed open: the image is fetched with the token.
  signed.trigger('.img', 'error', { errMsg: 'load fail' })
  await signed.waitFor(() => signed.comp.data.src === '/tmp/download-a.png', 'fallback to the token')
  app.wx.downloadFile = o => setTimeout(() => o.fail({ errMsg: 'downloadFile:fail' }), 0)
  const broken = app.mount('shared/components/secure-image/secure-image', { imageRef: 'c' })
  await broken.waitForText('图片加载失败，点击重试')
})

test('the worker task card shows the title, yuan, slots and the take countdown', async t => {
  const app = setupApp('worker', { start: false })
  t.after(app.close)
  const card = app.mount('components/task-card/task-card', { task: { id: 1, title: '点赞视频', priceText: '¥2.50', slotsText: '剩余 4/5 个名额', takeDeadline: new Date(Date.now() + 125000).toISOString() } })
  assert.match(card.text(), /^点赞视频 ¥2\.50 剩余 4\/5 个名额 剩余 02:0[45]$/)
  card.comp.setData({ task: { id: 1, title: '点赞视频', priceText: '¥2.50', slotsText: '剩余 0/5 个名额', takeDeadline: '' } })
  assert.strictEqual(card.text(), '点赞视频 ¥2.50 剩余 0/5 个名额')
})
