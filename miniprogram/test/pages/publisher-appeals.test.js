'use strict'
// The publisher's side of a rejection (issue 14 §2): rejecting by the task's acceptance criterion or
// 其他 with a reason of at least 10 characters, the whole appeal exchange, and the one answer.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')
const { err } = require('../helpers/fake-wx')

const at = s => new Date(Date.now() + s * 1000).toISOString()
/** Beijing time as the screens print it: "2026-12-01 10:15". */
const bj = iso => new Date(Date.parse(iso) + 8 * 3600 * 1000).toISOString().slice(0, 16).replace('T', ' ')
const CRITERIA = ['截图须含公众号名称', '须关注满24小时']
const workerRecord = { new: true, window_days: 90, min_sample: 10, orders: 1, completed: 0, failed: 0, abandoned: 0, approval_bp: null, abandon_bp: null, appeals_won: 0, appeals_lost: 0, limited: null, computed_at: at(-5) }

function order(over = {}) {
  return Object.assign({
    id: 11, task_id: 1, status: 'awaiting_review', unit_price_fen: 1000, taken_at: at(-60), submit_deadline_at: at(-10), submitted_at: at(-10),
    review_deadline_at: at(1190), rejected_at: null, reject_reason: null, reject_criterion: null, appeal_deadline_at: null, appealed_at: null,
    appeal_reason: null, appeal_evidence: null, appeal_evidence_url: null, proof_text: '已关注，见截图', proof_image: null, proof_image_url: null,
    answer_text: null, answer_image: null, answer_image_url: null, answered_at: null, answer_due_at: null,
    decision_note: null, finished_at: null, finished_by: null, deadline_at: at(1190), now: at(0),
    task: { id: 1, title: '关注公众号', instructions: '关注后截图', attachment_kind: null, attachment: null, attachment_url: null, criteria: CRITERIA },
    worker_id: 7, worker_record: workerRecord,
  }, over)
}

const rejectedBy = (body, over = {}) => {
  const criterion = Number.isInteger(body.criterion) ? CRITERIA[body.criterion] : null
  return order(Object.assign({ status: 'rejected', rejected_at: at(0), reject_criterion: criterion, reject_reason: body.reason || criterion, appeal_deadline_at: at(600), deadline_at: at(600) }, over))
}

test('rejecting a task with criteria asks which one the proof fails, and sends its index', async t => {
  let current = order()
  const rejects = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/reject': req => {
        rejects.push(req.body)
        return (current = rejectedBy(req.body))
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  const text = await page.waitForText('驳回时请选择凭证未达到的验收标准')
  assert.match(text, /1\. 截图须含公众号名称 ○ 2\. 须关注满24小时 ○ 其他（须用至少 10 个字说明原因）/)
  page.tap('.reject')
  await page.waitFor(() => app.wx.toasts.includes('请选择凭证未达到的验收标准，或选择“其他”并说明原因'), 'nothing chosen')
  assert.match(page.text('.reject-error'), /请选择凭证未达到的验收标准/)
  page.tap('.criterion-1')
  await page.waitForText('● 2. 须关注满24小时')
  assert.ok(!page.has('.reject-error'), 'choosing clears the problem')
  page.tap('.reject')
  await page.waitForText('接单方申诉截止')
  assert.match(app.wx.modals[0].content, /未达到验收标准：须关注满24小时/)
  assert.deepStrictEqual(rejects, [{ criterion: 1 }])
  const after = page.text()
  assert.match(after, /驳回原因 未达到验收标准：须关注满24小时 驳回于/)
  assert.doesNotMatch(after, /补充说明/, 'the criterion alone is the reason')
  assert.ok(!page.has('.decide'))
})

test('a criterion with a detail sends both; the worker-facing text shows the detail', async t => {
  let current = order()
  const rejects = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/reject': req => {
        rejects.push(req.body)
        return (current = rejectedBy(req.body))
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  await page.waitForText('驳回时请选择')
  page.tap('.criterion-0')
  page.input('.reason', '  截图里看不到名称  ')
  page.tap('.reject')
  await page.waitForText('补充说明')
  assert.deepStrictEqual(rejects, [{ criterion: 0, reason: '截图里看不到名称' }])
  assert.match(page.text(), /未达到验收标准：截图须含公众号名称 补充说明： 截图里看不到名称/)
})

test('其他 needs at least 10 characters, counted as the server counts them (an emoji is one)', async t => {
  let current = order()
  const rejects = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/reject': req => {
        rejects.push(req.body)
        return (current = rejectedBy(req.body))
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  await page.waitForText('驳回时请选择')
  page.tap('.criterion-other')
  await page.waitForText('已输入 0 字，至少 10 字')
  page.input('.reason', '👍👍👍👍👍👍👍👍👍') // 9 characters, 18 UTF-16 units
  await page.waitForText('已输入 9 字，至少 10 字')
  page.tap('.reject')
  await page.waitFor(() => app.wx.toasts.includes('选择“其他”时，请用至少 10 个字说明原因'), 'too short')
  assert.strictEqual(rejects.length, 0)
  page.input('.reason', '截图是别人的账号，不是本人')
  await page.waitForText('已输入 13 字')
  page.tap('.reject')
  await page.waitForText('接单方申诉截止')
  assert.deepStrictEqual(rejects, [{ reason: '截图是别人的账号，不是本人' }])
  assert.match(page.text(), /驳回原因 其他：截图是别人的账号，不是本人/)
})

test('the server refusing a field says its reason next to the form, in Chinese, and keeps the order open', async t => {
  const rejects = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => order(),
      'POST /orders/:id/reject': req => {
        rejects.push(req.body)
        return err(400, 'invalid_input', { fields: { criterion: '请选择任务的一条验收标准。' } })
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  await page.waitForText('驳回时请选择')
  page.tap('.criterion-0')
  page.tap('.reject')
  await page.waitForText('请选择任务的一条验收标准。')
  assert.strictEqual(rejects.length, 1)
  assert.ok(page.has('.decide'), 'still awaiting review')
})

test('a task without criteria still needs a reason, and sends only the reason', async t => {
  let current = order({ task: { id: 1, title: '关注公众号', instructions: '关注后截图', attachment_kind: null, attachment: null, attachment_url: null, criteria: null } })
  const rejects = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/reject': req => {
        rejects.push(req.body)
        return (current = rejectedBy(req.body, { task: current.task }))
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  await page.waitForText('已关注，见截图')
  assert.ok(!page.has('.criteria'))
  page.tap('.reject')
  await page.waitFor(() => app.wx.toasts.includes('请填写驳回原因'))
  page.input('.reason', '没关注')
  page.tap('.reject')
  await page.waitForText('接单方申诉截止')
  assert.deepStrictEqual(rejects, [{ reason: '没关注' }])
  assert.match(page.text(), /驳回原因 原因：没关注/)
})

test('an appeal shows the whole exchange; the publisher answers once with text and an uploaded image before it is due', async t => {
  const due = at(3000)
  let current = order({
    status: 'appealing', rejected_at: at(-300), reject_criterion: CRITERIA[0], reject_reason: CRITERIA[0], appeal_deadline_at: at(300),
    appealed_at: at(-60), appeal_reason: '名称在第二张截图里', appeal_evidence: 'ev-1', appeal_evidence_url: 'http://test.local/i/ev-1?sig=x',
    answer_due_at: due, deadline_at: null,
  })
  const answers = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/answer': req => {
        answers.push(req.body)
        return (current = Object.assign({}, current, { answer_text: req.body.text, answer_image: req.body.image, answer_image_url: 'http://test.local/i/ref-1?sig=y', answered_at: at(0), answer_due_at: null }))
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  const text = await page.waitForText('接单方的申诉')
  assert.match(text, /驳回原因 未达到验收标准：截图须含公众号名称 驳回于 .*（北京时间） 接单方的申诉 名称在第二张截图里/)
  assert.match(text, new RegExp(`我的回应 你尚未回应 回应截止 ${bj(due)}（北京时间） (49|50):\\d\\d 逾期未回应，申诉将自动判接单方胜诉`))
  assert.match(text, /回应申诉 回应只能提交一次/)
  await page.waitFor(() => page.find('.exchange >>> .evidence >>> .img'), 'the evidence image')
  page.tap('.answer')
  await page.waitFor(() => app.wx.toasts.includes('请填写回应内容'), 'text required')
  assert.strictEqual(answers.length, 0)
  page.input('.answer-input', '第二张截图是别的公众号')
  page.tap('.pick-answer-image')
  await page.waitForText('图片已上传')
  assert.strictEqual(app.wx.uploads[0].name, 'file')
  page.tap('.answer')
  await page.waitForText('你已回应')
  assert.deepStrictEqual(answers, [{ text: '第二张截图是别的公众号', image: 'ref-1' }])
  assert.match(app.wx.modals[0].content, /回应只能提交一次/)
  assert.match(page.text(), /我的回应 第二张截图是别的公众号 回应于 .*（北京时间）/)
  assert.ok(!page.has('.answer-form'), 'answered once: no second form')
  await page.waitFor(() => page.find('.exchange >>> .answer-image >>> .img'), 'the answer image')
})

test('an answer that comes too late says so in Chinese and shows the decision the rule made', async t => {
  let current = order({
    status: 'appealing', rejected_at: at(-300), reject_reason: '截图是别人的账号，不是本人', appeal_deadline_at: at(300),
    appealed_at: at(-60), appeal_reason: '是我本人', answer_due_at: at(3000), deadline_at: null,
  })
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/answer': () => {
        current = Object.assign({}, current, { status: 'completed', answer_due_at: null, finished_at: at(0), finished_by: 'arbitrate_worker', decision_note: '自动规则：发单方未在期限内回应申诉（publisher_loss_rate）' })
        return err(409, 'invalid_transition', { status: 'completed' })
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  await page.waitForText('回应申诉')
  page.input('.answer-input', '不是本人')
  page.tap('.answer')
  await page.waitFor(() => app.wx.toasts.includes('申诉已不能回应（订单已完成）'), 'refused in Chinese')
  const text = await page.waitForText('裁决结果')
  assert.match(text, /驳回原因 其他：截图是别人的账号，不是本人/)
  assert.match(text, /裁决结果 平台仲裁：接单方胜诉 接单方胜诉：佣金已支付给接单方 说明：/)
  assert.match(text, /说明： 自动规则：发单方未在期限内回应申诉 裁决于/, 'the rule\'s code is for operators')
  assert.ok(!page.has('.answer-form'))
})

test('an order the operator decided shows the rejection, the appeal, my answer and the decision', async t => {
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => order({
        status: 'failed', rejected_at: at(-900), reject_criterion: CRITERIA[1], reject_reason: '关注两小时就取关了', appealed_at: at(-600), appeal_reason: '我没有取关',
        answer_text: '取关记录见图', answered_at: at(-300), finished_at: at(-60), finished_by: 'arbitrate_publisher', decision_note: '取关属实', deadline_at: null,
      }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  const text = await page.waitForText('裁决结果')
  assert.match(text, /未达到验收标准：须关注满24小时 补充说明： 关注两小时就取关了 .* 接单方的申诉 我没有取关 .* 我的回应 取关记录见图 回应于 .* 裁决结果 平台仲裁：发单方胜诉 你胜诉：费用已退回你的余额 说明： 取关属实 裁决于 .*（北京时间）/)
  assert.ok(!page.has('.answer-form'))
})

test('publish takes acceptance criteria one a line, refusing duplicates and more than 10 before sending', async t => {
  const published = []
  const app = setupApp('publisher', {
    routes: {
      'GET /wallet': () => ({ available_fen: 50000, withdrawing_fen: 0, total_earned_fen: 0, referral_earned_fen: 0, total_recharged_fen: 50000, total_spent_fen: 0 }),
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
  page.input('.criteria-input', '截图须含公众号名称\n截图须含公众号名称')
  await page.waitForText('验收标准不能重复')
  page.input('.criteria-input', Array.from({ length: 11 }, (_, i) => `标准${i + 1}`).join('\n'))
  await page.waitForText('验收标准最多 10 条')
  page.tap('.submit')
  await page.waitFor(() => app.wx.toasts.includes('验收标准最多 10 条'), 'refused before sending')
  assert.strictEqual(published.length, 0)
  page.input('.criteria-input', ' 截图须含公众号名称 \n\n须关注满24小时\n')
  await page.waitForGone('.criteria-problem')
  page.tap('.submit')
  await page.waitFor(() => published.length === 1, 'published')
  assert.deepStrictEqual(published[0].criteria, CRITERIA)
})

test('the review tab lists the appeals I have not answered, the one due first on top, and opens one to answer', async t => {
  const appealing = (id, over) => order(Object.assign({ id, status: 'appealing', rejected_at: at(-300), reject_criterion: CRITERIA[0], reject_reason: CRITERIA[0], appealed_at: at(-100 + id), appeal_reason: `申诉${id}`, deadline_at: null }, over))
  let orders = [appealing(21), appealing(22, { answer_due_at: at(1200) }), appealing(23, { answer_text: '已回应', answered_at: at(-5) })]
  const app = setupApp('publisher', {
    routes: {
      // The server lists the appeals not answered yet (tests/api/test_publisher_waiting.py).
      'GET /orders': req => ({ items: req.query.need === 'answer' ? orders.filter(o => !o.answered_at) : [], next_cursor: null }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/review/index')
  const text = await page.waitForText('待回应的申诉（2）')
  assert.match(text, /关注公众号 回应截止 (19|20):\d\d 订单 #22 .* 驳回：未达到验收标准：截图须含公众号名称 申诉：申诉22 查看并回应 关注公众号 订单 #21/)
  assert.doesNotMatch(text, /申诉23/, 'answered: nothing left to do')
  assert.doesNotMatch(text, /超时未审核/, 'nothing to review')
  await page.waitFor(() => app.ctx.live.state === 'open')
  orders = [appealing(21), appealing(22, { answer_text: '已回应', answered_at: at(0) })]
  app.wx.push('order.answered', { order_id: 22, task_id: 1, answered_at: at(0) })
  await page.waitForText('待回应的申诉（1）')
  page.tap('.appeal-21 .open-appeal')
  await page.waitFor(() => app.wx.navigations.some(n => n[1] === '/pages/order/review?id=21'), 'opened')
})
