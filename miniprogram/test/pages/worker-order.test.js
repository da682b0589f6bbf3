'use strict'
// The worker's order: countdown, proof with an uploaded image, abandon, rejection → appeal or accept; my orders.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')
const { err } = require('../helpers/fake-wx')

const at = s => new Date(Date.now() + s * 1000).toISOString()

function order(over = {}) {
  return Object.assign({
    id: 7, task_id: 3, status: 'in_progress', unit_price_fen: 1250, taken_at: at(-10), submit_deadline_at: at(290), submitted_at: null,
    review_deadline_at: null, rejected_at: null, reject_reason: null, appeal_deadline_at: null, appealed_at: null, appeal_reason: null,
    appeal_evidence: null, proof_text: null, proof_image: null, decision_note: null, finished_at: null, finished_by: null,
    deadline_at: at(290), now: new Date().toISOString(),
    task: { id: 3, title: '关注公众号', instructions: '关注后截图上传', attachment_kind: 'text', attachment: '公众号：任务小站' },
  }, over)
}

test('an order in progress counts down, uploads a proof image with progress and submits it', async t => {
  let current = order()
  const submitted = []
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/submit': req => {
        submitted.push(req.body)
        current = order({ status: 'awaiting_review', submitted_at: at(0), proof_text: req.body.proof_text, proof_image: req.body.proof_image, review_deadline_at: at(1200), deadline_at: at(1200) })
        return current
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  const text = await page.waitForText('关注后截图上传')
  assert.match(text, /关注公众号 进行中 佣金 ¥12\.50 提交截止 0[45]:\d\d/)
  page.input('.proof-text', '已关注，截图见附件')
  page.tap('.pick-proof')
  await page.waitForText('图片已上传')
  assert.strictEqual(app.wx.uploads[0].filePath, '/tmp/chosen-1.png')
  assert.strictEqual(app.wx.uploads[0].name, 'file')
  assert.strictEqual(app.wx.uploads[0].header.Authorization, 'Bearer token-1')
  page.tap('.submit')
  await page.waitForText('等待发单方审核')
  assert.deepStrictEqual(submitted, [{ proof_text: '已关注，截图见附件', proof_image: 'ref-1' }])
  assert.match(page.text(), /待审核 .* 审核截止 (19|20):\d\d .* 我提交的凭证 已关注，截图见附件/)
  assert.ok(!page.has('.submit-form'))
})

test('a too-large proof image is refused in Chinese and nothing is attached', async t => {
  const app = setupApp('worker', { routes: { 'GET /orders/:id': () => order() } })
  t.after(app.close)
  app.wx.behaviour.uploadStatus = 413
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('提交凭证')
  page.tap('.pick-proof')
  await page.waitFor(() => app.wx.toasts.includes('图片超过 5MB，请换一张'), 'toast')
  assert.ok(!page.text().includes('图片已上传'))
})

test('abandoning asks first; cancelling keeps the order, confirming abandons it', async t => {
  let current = order()
  let abandons = 0
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/abandon': () => {
        abandons += 1
        current = order({ status: 'abandoned', deadline_at: null, finished_by: 'abandon' })
        return current
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('放弃订单')
  app.wx.answerModal(false)
  page.tap('.abandon')
  await page.waitFor(() => app.wx.modals.length === 1, 'asked')
  assert.match(app.wx.modals[0].content, /放弃后不能再接这个任务/)
  assert.strictEqual(abandons, 0)
  page.tap('.abandon')
  await page.waitForText('你已放弃此订单')
  assert.strictEqual(abandons, 1)
})

test('the countdown ending shows what the server did (moved to review by itself)', async t => {
  let current = order({ submit_deadline_at: at(1), deadline_at: at(1) })
  const app = setupApp('worker', { routes: { 'GET /orders/:id': () => current } })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('提交凭证')
  current = order({ status: 'awaiting_review', submitted_at: at(0), review_deadline_at: at(1200), deadline_at: at(1200) })
  await page.waitForText('等待发单方审核', 8000)
})

test('a rejected order shows the reason and the appeal countdown; an appeal needs a reason and carries the evidence', async t => {
  let current = order({ status: 'rejected', submitted_at: at(-100), proof_text: '截图', rejected_at: at(-5), reject_reason: '截图看不清', appeal_deadline_at: at(595), deadline_at: at(595) })
  const appeals = []
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/appeal': req => {
        appeals.push(req.body)
        current = Object.assign({}, current, { status: 'appealing', appeal_reason: req.body.reason, appeal_evidence: req.body.evidence, deadline_at: null })
        return current
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  const text = await page.waitForText('截图看不清')
  assert.match(text, /已驳回 .* 申诉截止 (09|10):\d\d/)
  page.tap('.appeal')
  await page.waitFor(() => app.wx.toasts.includes('请填写申诉理由'), 'reason required')
  assert.strictEqual(appeals.length, 0)
  page.input('.appeal-reason', '我已按要求关注')
  page.tap('.pick-evidence')
  await page.waitFor(() => page.data.evidenceRef === 'ref-1', 'evidence uploaded')
  page.tap('.appeal')
  await page.waitForText('申诉已提交，等待平台仲裁')
  assert.deepStrictEqual(appeals, [{ reason: '我已按要求关注', evidence: 'ref-1' }])
  assert.match(page.text(), /我的申诉 我已按要求关注/)
})

test('accepting a rejection asks first and shows the failed order', async t => {
  let current = order({ status: 'rejected', reject_reason: '不符合要求', appeal_deadline_at: at(500), deadline_at: at(500), submitted_at: at(-60) })
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/accept-rejection': () => (current = Object.assign({}, current, { status: 'failed', deadline_at: null, finished_by: 'accept_rejection' })),
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('接受驳回')
  page.tap('.accept-rejection')
  await page.waitForText('订单失败（接单方接受驳回）')
})

test('an action that lost to the timer says so in Chinese and shows the settled state', async t => {
  let current = order()
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/submit': () => {
        current = order({ status: 'awaiting_review', submitted_at: at(0), deadline_at: at(1200), review_deadline_at: at(1200) })
        return err(409, 'deadline_passed')
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('提交凭证')
  page.tap('.submit')
  await page.waitFor(() => app.wx.toasts.includes('已超过截止时间'), 'toast')
  await page.waitForText('等待发单方审核')
})

test('the order changes live when the publisher approves it', async t => {
  let current = order({ status: 'awaiting_review', submitted_at: at(-5), deadline_at: at(1100), review_deadline_at: at(1100) })
  const app = setupApp('worker', { routes: { 'GET /orders/:id': () => current } })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('等待发单方审核')
  await page.waitFor(() => app.ctx.live.state === 'open')
  current = Object.assign({}, current, { status: 'completed', deadline_at: null, finished_by: 'approve', finished_at: at(0) })
  app.wx.push('order.changed', { order_id: 7, task_id: 3, status: 'completed' })
  await page.waitForText('订单已完成，佣金 ¥12.50 已入账（发单方通过）')
})

test('my orders: tabs filter by state, a live change reloads, a tap opens the order', async t => {
  const asked = []
  let status = 'in_progress'
  const app = setupApp('worker', {
    routes: {
      'GET /orders': req => {
        asked.push(req.query.status || '')
        return { items: req.query.status === 'completed' ? [] : [order({ status })], next_cursor: null }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/orders/index')
  await page.waitForText('关注公众号 进行中')
  await page.waitFor(() => app.ctx.live.state === 'open')
  status = 'awaiting_review'
  app.wx.push('order.changed', { order_id: 7, status: 'awaiting_review' })
  await page.waitForText('关注公众号 待审核')
  page.tap('.order-7')
  await page.waitFor(() => app.wx.navigations.length)
  assert.deepStrictEqual(app.wx.navigations[0], ['navigateTo', '/pages/order/detail?id=7'])
  page.tap('.tab-completed')
  await page.waitForText('没有这类订单')
  assert.strictEqual(asked[asked.length - 1], 'completed')
})
