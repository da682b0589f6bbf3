'use strict'
// Workers' records and blocks in the publisher app (issue 14), rendered and used as a person would.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')

const at = s => new Date(Date.now() + s * 1000).toISOString()
const workerRecord = over => Object.assign({ new: false, window_days: 90, min_sample: 10, orders: 30, completed: 25, failed: 3, abandoned: 2, approval_bp: 8928, abandon_bp: 666, appeals_won: 1, appeals_lost: 1, limited: null, computed_at: at(-5) }, over)
function order(id, over = {}) {
  return Object.assign({ id, task_id: 1, status: 'completed', unit_price_fen: 1000, taken_at: at(-60), submit_deadline_at: at(-10), submitted_at: at(-10), review_deadline_at: null, rejected_at: null, reject_reason: null, appeal_deadline_at: null, appealed_at: null, appeal_reason: null, appeal_evidence: null, proof_text: '已完成', proof_image: null, proof_image_url: null, decision_note: null, finished_at: at(-5), finished_by: 'approve', deadline_at: null, now: at(0), task: { id: 1, title: '任务1', instructions: '说明', attachment_kind: null, attachment: null }, worker_id: 7, worker_record: workerRecord() }, over)
}

test('the publisher sees the worker\'s record on an order and blocks them with a reason', async t => {
  const posted = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => order(11),
      'POST /blocks': req => {
        posted.push(req.body)
        return { status: 201, body: { id: 1, worker_id: 7, nickname: 'bob', reason: req.body.reason, created_at: at(0), worker_record: workerRecord(), replayed: false } }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  const text = await page.waitForText('接单者')
  assert.match(text, /通过率 89\.3% · 已完成 25 单 · 放弃率 6\.7% · 申诉 胜1\/负1/)
  page.tap('.block')
  await page.waitFor(() => app.wx.toasts.includes('请填写屏蔽原因'))
  page.input('.block-reason', '多次提交无关截图')
  page.tap('.block')
  await page.waitForText('已屏蔽该接单者')
  assert.deepStrictEqual(posted, [{ order_id: 11, reason: '多次提交无关截图' }])
})

test('blocking a worker blocked before says so and shows the reason that stands', async t => {
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => order(12),
      'POST /blocks': () => ({ status: 200, body: { id: 1, worker_id: 7, nickname: 'bob', reason: '第一次的原因', created_at: at(-600), worker_record: workerRecord(), replayed: true } }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '12' })
  await page.waitForText('接单者')
  page.input('.block-reason', '新的原因不会覆盖')
  page.tap('.block')
  const text = await page.waitForText('你此前已屏蔽过 TA')
  assert.match(text, /原因仍为：第一次的原因/)
  assert.ok(app.wx.toasts.includes('此前已屏蔽'))
})

test('the blocks list shows who and why, and unblocking removes them', async t => {
  const deleted = []
  const app = setupApp('publisher', {
    routes: {
      'GET /blocks': () => ({ items: [{ id: 2, worker_id: 8, nickname: '小王', reason: '刷单', created_at: at(-60), worker_record: workerRecord({ new: true, approval_bp: null, abandon_bp: null, completed: 1 }) }], next_cursor: null }),
      'DELETE /blocks/:id': req => {
        deleted.push(req.params.id)
        return { status: 204, body: '' }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/blocks/index')
  const text = await page.waitForText('小王')
  assert.match(text, /原因：刷单/)
  assert.match(text, /新接单者 · 已完成 1 单/)
  page.tap('.unblock')
  await page.waitForText('你还没有屏蔽任何接单者')
  assert.deepStrictEqual(deleted, ['8'])
})

test('unblocking the last worker shown loads the next page instead of saying there are none', async t => {
  let removed = false
  const app = setupApp('publisher', {
    routes: {
      'GET /blocks': () => removed
        ? { items: [{ id: 3, worker_id: 9, nickname: '小李', reason: '抄袭', created_at: at(-90), worker_record: workerRecord() }], next_cursor: null }
        : { items: [{ id: 4, worker_id: 8, nickname: '小王', reason: '刷单', created_at: at(-60), worker_record: workerRecord() }], next_cursor: '3' },
      'DELETE /blocks/:id': () => {
        removed = true
        return { status: 204, body: '' }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/blocks/index')
  await page.waitForText('小王')
  page.tap('.unblock')
  const text = await page.waitForText('小李')
  assert.doesNotMatch(text, /你还没有屏蔽任何接单者/)
  assert.doesNotMatch(text, /小王/)
})

test('publish may restrict the task to workers with a minimum approval rate and completed orders', async t => {
  const published = []
  const app = setupApp('publisher', {
    routes: {
      'GET /wallet': () => ({ available_fen: 50000, withdrawing_fen: 0, total_earned_fen: 0, referral_earned_fen: 0, total_recharged_fen: 50000, total_spent_fen: 0 }),
      'GET /config': () => ({ min_unit_price_fen: 100, max_unit_price_fen: 10000, max_quantity: 100, publish_fee_bp: 1000, take_window_s: 180, countdown_s: 300, review_window_s: 1200, appeal_window_s: 600, min_withdraw_fen: 1000, withdraw_fee_bp: 100, subscriptions: [], now: at(0) }),
      'POST /tasks': req => {
        published.push(req.body)
        return { status: 201, body: { id: 21 } }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/publish/index')
  await page.waitForText('可用余额 ¥500.00')
  page.input('.title-input', '关注公众号')
  page.input('.instructions', '关注后截图')
  page.input('.price-input', '10')
  page.tap('.approval-9000')
  page.input('.min-completed-input', '5')
  await page.waitForText('¥11.00')
  page.tap('.submit')
  await page.waitFor(() => published.length === 1, 'published')
  assert.strictEqual(published[0].min_approval_bp, 9000)
  assert.strictEqual(published[0].min_completed_orders, 5)
})
