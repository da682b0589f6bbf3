'use strict'
// The worker's side of a rejection (issue 14 §2): why (the acceptance criterion or 其他 + the
// reason), the appeal countdown, a paused appeal, and the whole exchange with the publisher's answer.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')
const { err } = require('../helpers/fake-wx')

const at = s => new Date(Date.now() + s * 1000).toISOString()
/** Beijing time as the screens print it: "2026-12-01 10:15". */
const bj = iso => new Date(Date.parse(iso) + 8 * 3600 * 1000).toISOString().slice(0, 16).replace('T', ' ')
const CRITERIA = ['截图须含公众号名称', '须关注满24小时']
const TASK = { id: 3, title: '关注公众号', instructions: '关注后截图上传', attachment_kind: null, attachment: null, attachment_url: null, criteria: CRITERIA }

function order(over = {}) {
  return Object.assign({
    id: 7, task_id: 3, status: 'rejected', unit_price_fen: 1250, taken_at: at(-900), submit_deadline_at: at(-600), submitted_at: at(-600),
    review_deadline_at: at(600), rejected_at: at(-30), reject_reason: '截图里看不到名称', reject_criterion: CRITERIA[0], appeal_deadline_at: at(570),
    appealed_at: null, appeal_reason: null, appeal_evidence: null, appeal_evidence_url: null, proof_text: '已关注', proof_image: null, proof_image_url: null,
    answer_text: null, answer_image: null, answer_image_url: null, answered_at: null, answer_due_at: null,
    decision_note: null, finished_at: null, finished_by: null, deadline_at: at(570), now: at(0), task: TASK,
  }, over)
}

test('a rejected order says which criterion failed, with the detail, the appeal deadline in Beijing time and its countdown', async t => {
  const current = order()
  const app = setupApp('worker', { routes: { 'GET /orders/:id': () => current } })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  const text = await page.waitForText('驳回原因')
  assert.match(text, /已驳回 佣金 ¥12\.50 申诉截止 (09|10):\d\d/)
  assert.match(text, /验收标准 1\. 截图须含公众号名称 2\. 须关注满24小时/)
  assert.match(text, /驳回原因 未达到验收标准：截图须含公众号名称 补充说明： 截图里看不到名称 驳回于 .*（北京时间）/)
  assert.ok(text.includes(`请在 ${bj(current.appeal_deadline_at)}（北京时间）前申诉，逾期订单失败`))
})

test('rejected as 其他: the reason after 其他', async t => {
  const app = setupApp('worker', { routes: { 'GET /orders/:id': () => order({ reject_criterion: null, reject_reason: '截图是别人的账号，不是本人' }) } })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  const text = await page.waitForText('驳回原因')
  assert.match(text, /驳回原因 其他：截图是别人的账号，不是本人 驳回于/)
})

test('paused appeals say until when (Beijing time); the appeal button stays off and accepting still works', async t => {
  const until = '2026-12-03T02:30:00.000000Z'
  let current = order()
  const appeals = []
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/appeal': req => {
        appeals.push(req.body)
        return err(403, 'appeals_paused', { streak: 3, until })
      },
      'POST /orders/:id/accept-rejection': () => (current = order({ status: 'failed', deadline_at: null, finished_by: 'accept_rejection', finished_at: at(0) })),
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('提交申诉')
  page.input('.appeal-reason', '名称在第二张截图里')
  page.tap('.appeal')
  const text = await page.waitForText('之后才能再次申诉')
  assert.match(page.text('.appeal-paused'), /^你最近 3 次申诉均未成功，2026-12-03 10:30（北京时间）之后才能再次申诉$/)
  assert.ok(text.includes('已驳回'), 'still rejected, not reloaded into an error')
  page.tap('.appeal')
  await page.waitFor(() => app.wx.toasts.filter(x => x.includes('之后才能再次申诉')).length === 1, 'said again')
  assert.strictEqual(appeals.length, 1, 'a paused appeal is not sent again')
  page.tap('.accept-rejection')
  await page.waitForText('订单失败（接单方接受驳回）')
})

test('while appealing the worker sees the exchange: my appeal, and the publisher not yet answering with the due time', async t => {
  const due = at(1800)
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => order({ status: 'appealing', appealed_at: at(-10), appeal_reason: '名称在第二张截图里', appeal_evidence: 'ev-1', appeal_evidence_url: 'http://test.local/i/ev-1?sig=x', answer_due_at: due, deadline_at: null }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  const text = await page.waitForText('我的申诉')
  assert.match(text, /驳回原因 未达到验收标准：截图须含公众号名称 .* 我的申诉 名称在第二张截图里 申诉于 .*（北京时间）/)
  assert.match(text, new RegExp(`发单方的回应 发单方尚未回应 回应截止 ${bj(due)}（北京时间） (29|30):\\d\\d 发单方逾期未回应，申诉将自动判你胜诉`))
  assert.ok(!page.has('.appeal-form'))
  await page.waitFor(() => page.find('.exchange >>> .evidence >>> .img'), 'my evidence')
})

test('the publisher\'s answer (text and image) shows live (order.answered), then the decision', async t => {
  let current = order({ status: 'appealing', appealed_at: at(-60), appeal_reason: '是我本人', deadline_at: null })
  const app = setupApp('worker', { routes: { 'GET /orders/:id': () => current } })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  await page.waitForText('发单方尚未回应')
  assert.doesNotMatch(page.text(), /回应截止/, 'no rule: no answer deadline')
  await page.waitFor(() => app.ctx.live.state === 'open')
  current = Object.assign({}, current, { answer_text: '截图中的账号与接单账号不一致', answer_image: 'an-1', answer_image_url: 'http://test.local/i/an-1?sig=z', answered_at: at(0) })
  app.wx.push('order.answered', { order_id: 7, task_id: 3, answered_at: at(0) })
  await page.waitForText('截图中的账号与接单账号不一致')
  assert.match(page.text(), /发单方的回应 截图中的账号与接单账号不一致 回应于 .*（北京时间）/)
  await page.waitFor(() => page.find('.exchange >>> .answer-image >>> .img'), 'the answer image')
  current = Object.assign({}, current, { status: 'failed', finished_at: at(0), finished_by: 'arbitrate_publisher', decision_note: '账号不一致' })
  app.wx.push('order.changed', { order_id: 7, task_id: 3, status: 'failed' })
  const text = await page.waitForText('裁决结果')
  assert.match(text, /裁决结果 平台仲裁：发单方胜诉 发单方胜诉：订单失败 说明： 账号不一致 裁决于 .*（北京时间）/)
})

test('an appeal the rule decided for me shows the decision without the rule\'s code', async t => {
  const app = setupApp('worker', {
    routes: {
      'GET /orders/:id': () => order({ status: 'completed', appealed_at: at(-600), appeal_reason: '是我本人', deadline_at: null, finished_at: at(-5), finished_by: 'arbitrate_worker', decision_note: '自动规则：发单方未在期限内回应申诉（publisher_loss_rate）' }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/detail', { id: '7' })
  const text = await page.waitForText('裁决结果')
  assert.match(text, /裁决结果 平台仲裁：接单方胜诉 你胜诉：佣金已入账 说明： 自动规则：发单方未在期限内回应申诉 裁决于/)
  assert.match(text, /订单已完成，佣金 ¥12\.50 已入账（平台仲裁：接单方胜诉）/)
})

test('the task page lists the acceptance criteria before the take', async t => {
  const app = setupApp('worker', {
    routes: {
      'GET /tasks/:id': () => ({ id: 3, title: '关注公众号', instructions: '关注后截图上传', attachment_kind: null, attachment: null, attachment_url: null, unit_price_fen: 1250, quantity: 5, slots_untaken: 4, status: 'open', countdown_s: 300, take_deadline_at: at(120), created_at: at(-60), now: at(0), min_approval_bp: 0, min_completed_orders: 0, criteria: CRITERIA, publisher_record: null }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/task/detail', { id: '3' })
  const text = await page.waitForText('验收标准')
  assert.match(text, /关注后截图上传 验收标准（发布者驳回时须指明未达到哪一条） 1\. 截图须含公众号名称 2\. 须关注满24小时/)
})
