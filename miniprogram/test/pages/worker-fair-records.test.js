'use strict'
// Records, blocks and task minimums in the worker app (issue 14), rendered and used as a person would.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')
const { err } = require('../helpers/fake-wx')

const at = s => new Date(Date.now() + s * 1000).toISOString()
const record = over => Object.assign({ new: false, window_days: 90, min_sample: 10, tasks: 12, orders: 80, reviewed: 60, approval_bp: 9250, rejection_bp: 750, auto_approve_bp: 500, appeal_bp: 5000, appeals_decided: 2, appeals_lost_bp: 5000, median_review_s: 180, computed_at: at(-5) }, over)
function task(id, over = {}) {
  return Object.assign({ id, title: `任务${id}`, instructions: '关注公众号并截图', attachment_kind: null, attachment: null, unit_price_fen: 1200, quantity: 3, slots_untaken: 2, status: 'open', countdown_s: 300, take_deadline_at: at(170), created_at: at(-10), min_approval_bp: 0, min_completed_orders: 0, now: at(0), publisher_record: record() }, over)
}

test('the hall shows each publisher\'s record, "new publisher" below the sample, and the task\'s minimums', async t => {
  const app = setupApp('worker', {
    routes: {
      'GET /hall': () => ({ items: [task(2), task(1, { publisher_record: record({ new: true, approval_bp: null, appeals_lost_bp: null, auto_approve_bp: null }), min_approval_bp: 9000, min_completed_orders: 5 })], next_cursor: null }),
    },
  })
  t.after(app.close)
  const hall = app.open('pages/index/index')
  const text = await hall.waitForText('任务2')
  assert.match(text, /通过率 92\.5% · 超时自动通过 5% · 申诉败诉 50%/)
  assert.match(text, /新发布者 要求通过率≥90%，完成≥5单/)
})

test('the task page shows the publisher\'s record; a block or a limit disables the take with the reason in Chinese', async t => {
  const app = setupApp('worker', {
    routes: {
      'GET /tasks/:id': () => task(4),
      'POST /tasks/:id/take': () => err(403, 'worker_limited', { reason: 'abandons', count: 5, max: 5, window_days: 7, limited_until: at(3600), limited_until_beijing: '2026-12-01 10:00' }),
    },
  })
  t.after(app.close)
  const detail = app.open('pages/task/detail', { id: '4' })
  const text = await detail.waitForText('发布者信誉')
  assert.match(text, /通过率 92\.5%/)
  assert.match(text, /审核用时中位数 3分钟/)
  detail.tap('.take')
  await detail.waitFor(() => app.wx.toasts.includes('近 7 天内放弃订单 5 次，暂停接单至 2026-12-01 10:00'), 'limit toast')
  await detail.waitForText('已无法接单')
})

test('a blocked worker learns it when taking', async t => {
  const app = setupApp('worker', { routes: { 'GET /tasks/:id': () => task(4), 'POST /tasks/:id/take': () => err(403, 'blocked_by_publisher') } })
  t.after(app.close)
  const detail = app.open('pages/task/detail', { id: '4' })
  await detail.waitForText('发布者信誉')
  detail.tap('.take')
  await detail.waitFor(() => app.wx.toasts.includes('该发布者已屏蔽你，不能接TA的任务'), 'block toast')
})

test('my profile shows my record as publishers see it, and a limit on my takes with until when', async t => {
  const until = '2026-12-05T04:00:00.000000Z'
  const app = setupApp('worker', {
    routes: {
      'GET /record': () => ({ record: { new: false, window_days: 90, min_sample: 10, orders: 30, completed: 25, failed: 3, abandoned: 2, approval_bp: 8928, abandon_bp: 666, appeals_won: 1, appeals_lost: 3, limited: { reason: 'appeals_lost', count: 3, max: 3, window_days: 30, until }, computed_at: at(-5) }, now: at(0) }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/profile/index')
  const text = await page.waitForText('我的信誉')
  assert.match(text, /我的信誉（发单者审核时可见） 统计 近 90 天接单 30 单 通过率 89\.3% 放弃率 6\.7% 已完成 \/ 已失败 \/ 已放弃 25 \/ 3 \/ 2 申诉 胜 1 · 负 3/)
  assert.match(text, /接单受限 近 30 天申诉失败 3 次（上限 3 次），2026-12-05 12:00（北京时间）后恢复/)
  assert.ok(app.wx.requests.some(r => r.path === '/record'))
})
