'use strict'
// The worker's task hall and task detail, rendered and used as a person would.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')
const { err } = require('../helpers/fake-wx')

const soon = s => new Date(Date.now() + s * 1000).toISOString()

function task(id, over = {}) {
  return Object.assign({ id, title: `任务${id}`, instructions: '关注公众号并截图', attachment_kind: null, attachment: null, unit_price_fen: 1200, quantity: 3, slots_untaken: 2, status: 'open', countdown_s: 300, take_deadline_at: soon(170), created_at: new Date().toISOString(), now: new Date().toISOString() }, over)
}

test('the hall lists open tasks in yuan with a live countdown, and filters by price', async t => {
  const asked = []
  const app = setupApp('worker', {
    routes: {
      'GET /hall': req => {
        asked.push(req.query)
        return { items: req.query.min_price_fen === '2001' ? [task(9, { unit_price_fen: 5000, title: '高价任务' })] : [task(2), task(1, { unit_price_fen: 350 })], next_cursor: null }
      },
    },
  })
  t.after(app.close)
  const hall = app.open('pages/index/index')
  const text = await hall.waitForText('任务2')
  assert.match(text, /任务2 ¥12\.00 剩余 2\/3 个名额 剩余 02:5\d/)
  assert.match(text, /¥3\.50/)
  hall.tap('.filter-high')
  await hall.waitForText('高价任务')
  assert.strictEqual(asked[asked.length - 1].min_price_fen, '2001')
  assert.ok(!hall.text().includes('任务2'))
})

test('the hall shows a task published right now, drops a task that filled up, and changes slots in place', async t => {
  let items = [task(1)]
  const app = setupApp('worker', { routes: { 'GET /hall': () => ({ items, next_cursor: null }) } })
  t.after(app.close)
  const hall = app.open('pages/index/index')
  await hall.waitForText('任务1')
  await hall.waitFor(() => app.ctx.live.state === 'open', 'socket open')
  items = [task(5, { title: '新发布的任务' }), task(1)]
  app.wx.push('hall.task_published', { task_id: 5, title: '新发布的任务', unit_price_fen: 1200, slots_untaken: 2, status: 'open' })
  await hall.waitForText('新发布的任务')
  app.wx.push('hall.task_changed', { task_id: 1, slots_untaken: 1, status: 'open' })
  await hall.waitFor(() => /任务1 ¥12\.00 剩余 1\/3/.test(hall.text()), 'slots updated')
  app.wx.push('hall.task_removed', { task_id: 5, slots_untaken: 0, status: 'full' })
  await hall.waitFor(() => !hall.text().includes('新发布的任务'), 'task removed')
})

test('an empty hall says so; a failed load shows a Chinese error and retries on tap', async t => {
  let fail = true
  const app = setupApp('worker', { routes: { 'GET /hall': () => (fail ? { networkError: true } : { items: [], next_cursor: null }) } })
  t.after(app.close)
  const hall = app.open('pages/index/index')
  await hall.waitForText('网络不给力')
  fail = false
  hall.tap('.state >>> .retry')
  await hall.waitForText('暂时没有可接的任务')
})

test('scrolling to the bottom loads the next page; pull-to-refresh reloads and stops the spinner', async t => {
  const app = setupApp('worker', {
    routes: { 'GET /hall': req => (req.query.cursor ? { items: [task(1, { title: '第二页任务' })], next_cursor: null } : { items: [task(3)], next_cursor: '3' }) },
  })
  t.after(app.close)
  const hall = app.open('pages/index/index')
  await hall.waitForText('上拉加载更多')
  hall.instance.onReachBottom()
  await hall.waitForText('第二页任务')
  await hall.waitForText('没有更多了')
  hall.instance.onPullDownRefresh()
  await hall.waitFor(() => app.wx.called('stopPullDownRefresh').length === 1, 'refresh stopped')
})

test('tapping a task opens it: instructions, image attachment to long-press, take asks for subscriptions and opens the order', async t => {
  const app = setupApp('worker', {
    routes: {
      'GET /hall': () => ({ items: [task(4, { attachment_kind: 'image', attachment: 'up-1' })], next_cursor: null }),
      'GET /tasks/:id': req => task(Number(req.params.id), { attachment_kind: 'image', attachment: 'up-1' }),
      'POST /tasks/:id/take': () => ({ status: 201, body: { id: 77, task_id: 4, status: 'in_progress' } }),
      'GET /config': () => ({ min_withdraw_fen: 1000, subscriptions: [{ event: 'order_approved', template_id: 'T-APPROVED', page: 'pages/order/detail?id={order_id}' }, { event: 'order_rejected', template_id: 'T-REJECTED', page: 'pages/order/detail?id={order_id}' }, { event: 'withdrawal_paid', template_id: 'T-PAID', page: 'pages/wallet/index' }] }),
    },
  })
  t.after(app.close)
  const hall = app.open('pages/index/index')
  await hall.waitForText('任务4')
  hall.tap('.task-4')
  await hall.waitFor(() => app.wx.navigations.length, 'navigation')
  assert.deepStrictEqual(app.wx.navigations[0], ['navigateTo', '/pages/task/detail?id=4'])
  const detail = app.open('pages/task/detail', { id: '4' })
  const text = await detail.waitForText('关注公众号并截图')
  assert.match(text, /接单后 5分钟 内完成/)
  await detail.waitFor(() => detail.find('.image >>> .img'), 'attachment image')
  assert.match(detail.text(), /长按图片可识别二维码/)
  detail.tap('.image >>> .img')
  await detail.waitFor(() => app.wx.called('previewImage').length, 'preview opened')
  assert.deepStrictEqual(app.wx.called('downloadFile')[0].header.Authorization, 'Bearer token-1')
  await detail.waitFor(() => app.ctx.config, 'config loaded')
  detail.tap('.take')
  await detail.waitFor(() => app.wx.navigations.some(n => n[0] === 'redirectTo'), 'order opened')
  assert.deepStrictEqual(app.wx.called('requestSubscribeMessage')[0].tmplIds, ['T-APPROVED', 'T-REJECTED'])
  assert.deepStrictEqual(app.wx.navigations.find(n => n[0] === 'redirectTo'), ['redirectTo', '/pages/order/detail?id=77'])
})

test('losing the race for the last slot says so in Chinese and disables the take button', async t => {
  const app = setupApp('worker', {
    routes: {
      'GET /tasks/:id': () => task(4, { attachment_kind: 'link', attachment: 'https://example.com/x' }),
      'POST /tasks/:id/take': () => err(409, 'slot_taken'),
    },
  })
  t.after(app.close)
  const detail = app.open('pages/task/detail', { id: '4' })
  await detail.waitForText('复制链接')
  detail.tap('.copy-link')
  await detail.waitFor(() => app.wx.called('setClipboardData').length, 'copied')
  assert.strictEqual(app.wx.called('setClipboardData')[0].data, 'https://example.com/x')
  detail.tap('.take')
  await detail.waitFor(() => app.wx.toasts.includes('手慢了，名额已被抢完'), 'toast')
  await detail.waitForText('已无法接单')
})
