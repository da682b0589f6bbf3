'use strict'
// The publisher's screens, rendered and used as a person would.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')
const { err } = require('../helpers/fake-wx')

const at = s => new Date(Date.now() + s * 1000).toISOString()
const funnel = over => Object.assign({ taken: 0, in_progress: 0, awaiting_review: 0, completed: 0, rejected: 0, appealing: 0, failed: 0, abandoned: 0, refunded_slots: 0 }, over)
function task(id, over = {}) {
  return Object.assign({ id, title: `任务${id}`, instructions: '说明', attachment_kind: null, attachment: null, unit_price_fen: 1000, quantity: 3, slots_untaken: 2, status: 'open', countdown_s: 300, take_deadline_at: at(150), created_at: at(-30), now: at(0), fee_fen: 100, slots_refunded: 0, orders_live: 1, review_window_s: 1200, appeal_window_s: 600, held_fen: 3300, funnel: funnel({ taken: 1, awaiting_review: 1 }) }, over)
}
function order(id, over = {}) {
  return Object.assign({ id, task_id: 1, status: 'awaiting_review', unit_price_fen: 1000, taken_at: at(-60), submit_deadline_at: at(-10), submitted_at: at(-10), review_deadline_at: at(1190), rejected_at: null, reject_reason: null, appeal_deadline_at: null, appealed_at: null, appeal_reason: null, appeal_evidence: null, proof_text: '已完成，见截图', proof_image: 'proof-1', proof_image_url: 'http://test.local/i/proof-1?sig=x', decision_note: null, finished_at: null, finished_by: null, deadline_at: at(1190), now: at(0), task: { id: 1, title: '任务1', instructions: '说明', attachment_kind: null, attachment: null } }, over)
}
const wallet = available => ({ available_fen: available, withdrawing_fen: 0, total_earned_fen: 0, referral_earned_fen: 0, total_recharged_fen: available, total_spent_fen: 0 })

test('home shows balances, running tasks and how many orders wait for review, live', async t => {
  let tasks = [task(1)]
  const app = setupApp('publisher', {
    routes: {
      'GET /wallet': () => wallet(20000),
      'GET /tasks': req => ({ items: req.query.status === 'full' ? [] : tasks, next_cursor: null }),
      'GET /overview': () => ({ held_fen: 123456, running_tasks: 73, awaiting_review: 1, appeals_to_answer: 2 }),
    },
  })
  t.after(app.close)
  const home = app.open('pages/index/index')
  const text = await home.waitForText('¥200.00')
  // The totals are the server's over all my tasks, not sums over the tasks listed.
  assert.match(text, /冻结在任务中 ¥1234\.56/)
  assert.match(text, /73 进行中的任务 1 待审核订单 2 待回应申诉/)
  assert.match(text, /任务1 ¥10\.00 · 剩余 2\/3 · 待审核 1/)
  await home.waitFor(() => app.ctx.live.state === 'open')
  tasks = [task(2, { title: '新任务', funnel: funnel() }), task(1)]
  app.wx.push('task.published', { task_id: 2 })
  await home.waitForText('新任务')
  home.tap('.reviewing')
  await home.waitFor(() => app.wx.navigations.length)
  assert.deepStrictEqual(app.wx.navigations[0], ['navigateTo', '/pages/review/index'])
})

test('recharge: a preset, wx.requestPayment with the server parameters, then the paid state once WeChat Pay confirms', async t => {
  const payment = { timeStamp: '1700000000', nonceStr: 'n1', package: 'prepay_id=wx1', signType: 'RSA', paySign: 'sig' }
  const starts = []
  let status = 'pending'
  let balance = 0
  const app = setupApp('publisher', {
    routes: {
      'GET /wallet': () => wallet(balance),
      'POST /recharges': req => {
        starts.push(req.body)
        return { status: 201, body: { recharge_id: 9, out_trade_no: 'R9', amount_fen: req.body.amount_fen, status: 'pending', payment } }
      },
      'GET /recharges/:id': () => ({ recharge_id: 9, out_trade_no: 'R9', amount_fen: 20000, status, payment }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/recharge/index')
  await page.waitForText('当前可用余额 ¥0.00')
  page.tap('.preset-20000')
  await page.waitForText('支付 ¥200.00')
  app.wx.behaviour.requestPayment = 'fail'
  page.tap('.pay')
  await page.waitFor(() => app.wx.toasts.includes('已取消支付'))
  app.wx.behaviour.requestPayment = 'success'
  page.tap('.pay')
  await page.waitForText('正在等待到账确认')
  const paid = app.wx.called('requestPayment')[1]
  assert.deepStrictEqual({ timeStamp: paid.timeStamp, nonceStr: paid.nonceStr, package: paid.package, signType: paid.signType, paySign: paid.paySign }, payment)
  assert.strictEqual(starts.length, 2)
  assert.strictEqual(starts[0].request_id, starts[1].request_id, 'a retry of the same recharge reuses its request id')
  assert.strictEqual(starts[0].amount_fen, 20000)
  status = 'paid'
  balance = 20000
  app.wx.push('wallet.changed', { reason: 'recharge', amount_fen: 20000 })
  const text = await page.waitForText('充值成功')
  assert.match(text, /充值成功 ¥200\.00 当前可用余额 ¥200\.00/)
})

test('publish shows the fee, the total q × (P + F) and the balance after before confirming, and asks for subscriptions in the confirmation tap only', async t => {
  const published = []
  const app = setupApp('publisher', {
    routes: {
      'GET /wallet': () => wallet(5000),
      'GET /config': () => ({ min_unit_price_fen: 100, max_unit_price_fen: 10000, max_quantity: 100, publish_fee_bp: 1000, take_window_s: 180, countdown_s: 300, review_window_s: 1200, appeal_window_s: 600, min_withdraw_fen: 1000, withdraw_fee_bp: 100, subscriptions: [{ event: 'order_taken', template_id: 'T1', page: 'pages/task/detail?id={task_id}' }, { event: 'order_awaiting_review', template_id: 'T2', page: 'pages/order/review?id={order_id}' }], now: at(0) }),
      'POST /tasks': req => {
        published.push(req.body)
        return { status: 201, body: task(21) }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/publish/index')
  await page.waitForText('可用余额 ¥50.00')
  assert.match(page.text(), /任务发布后 3分钟 内未被接的名额自动退款/)
  page.input('.title-input', '关注公众号')
  page.input('.instructions', '关注后截图')
  page.input('.price-input', '200')
  await page.waitForText('单价须在 ¥1.00 ~ ¥100.00 之间')
  page.input('.price-input', '12.5')
  page.input('.quantity-input', '4')
  let text = await page.waitForText('¥55.00')
  assert.match(text, /每单服务费（10%） ¥1\.25 合计 = 数量 ×（单价 \+ 服务费） ¥55\.00 可用余额 ¥50\.00 发布后余额 -¥5\.00 余额不足，请先充值/)
  page.tap('.submit')
  await page.waitFor(() => app.wx.toasts.includes('余额不足，请先充值'))
  assert.strictEqual(published.length, 0)
  page.input('.quantity-input', '3')
  text = await page.waitForText('发布后余额 ¥8.75')
  page.tap('.kind-link')
  await page.waitFor(() => page.has('.attachment-input'))
  page.input('.attachment-input', 'https://mp.example.com/a')
  // Cancelled at the confirmation: nothing published, and no subscription asked for.
  app.wx.answerModal(false)
  page.tap('.submit')
  await page.waitFor(() => app.wx.modalsAnswered === 1, 'confirmation cancelled')
  assert.strictEqual(published.length, 0)
  assert.strictEqual(app.wx.called('requestSubscribeMessage').length, 0, 'a cancelled publish asks for no subscription')
  page.tap('.submit')
  await page.waitFor(() => published.length === 1, 'published')
  assert.match(app.wx.modals[0].content, /3 个名额 × \(¥12\.50 \+ 服务费 ¥1\.25\) = ¥41\.25，发布后余额 ¥8\.75/)
  assert.deepStrictEqual(app.wx.called('requestSubscribeMessage')[0].tmplIds, ['T1', 'T2'])
  // One system dialog at a time: the confirmation, then (in its 发布 tap) the subscription prompt, then the publish.
  const order = app.wx.sequence().filter(n => ['showModal', 'requestSubscribeMessage', 'POST /tasks'].includes(n))
  assert.deepStrictEqual(order, ['showModal', 'showModal', 'requestSubscribeMessage', 'POST /tasks'], 'cancelled, then confirmed')
  assert.deepStrictEqual(app.wx.subscribePrompts.map(p => p.inDialogTap), [true])
  const body = Object.assign({}, published[0])
  assert.match(body.request_id, /^p-/)
  delete body.request_id
  assert.deepStrictEqual(body, { title: '关注公众号', instructions: '关注后截图', unit_price_fen: 1250, quantity: 3, attachment_kind: 'link', attachment: 'https://mp.example.com/a' })
  await page.waitFor(() => app.wx.navigations.some(n => n[1] === '/pages/task/detail?id=21'))
})

test('publish with an image attachment uploads it first and refuses a price out of range in Chinese', async t => {
  const published = []
  const app = setupApp('publisher', {
    routes: {
      'GET /wallet': () => wallet(100000),
      'POST /tasks': req => {
        published.push(req.body)
        return err(400, 'price_out_of_range')
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/publish/index')
  await page.waitForText('可用余额 ¥1000.00')
  page.input('.title-input', '扫码')
  page.input('.instructions', '扫码关注')
  page.input('.price-input', '5')
  page.input('.quantity-input', '1')
  page.tap('.kind-image')
  await page.waitFor(() => page.has('.pick-image'))
  page.tap('.submit')
  await page.waitFor(() => app.wx.toasts.includes('请先上传图片'))
  page.tap('.pick-image')
  await page.waitForText('图片已上传')
  page.tap('.submit')
  await page.waitFor(() => app.wx.toasts.includes('单价不在允许的范围内'))
  assert.strictEqual(published[0].attachment, 'ref-1')
  assert.strictEqual(published[0].attachment_kind, 'image')
})

test('my tasks: tabs by state with each task funnel', async t => {
  const app = setupApp('publisher', {
    routes: { 'GET /tasks': req => ({ items: req.query.status === 'expired' ? [task(3, { status: 'expired', slots_untaken: 0, funnel: funnel({ refunded_slots: 3 }) })] : [task(1, { funnel: funnel({ taken: 2, in_progress: 1, completed: 1 }) })], next_cursor: null }) },
  })
  t.after(app.close)
  const page = app.open('pages/tasks/index')
  const text = await page.waitForText('任务1')
  assert.match(text, /任务1 进行中 ¥10\.00 × 3 个 · 剩余 2 个 .* 2 已接单 1 进行中 0 待审核 1 已完成/)
  page.tap('.tab-expired')
  await page.waitForText('3 已退款名额')
  assert.match(page.text(), /任务3 已过期/)
})

test('task detail lists orders and cancels the untaken slots after confirming', async t => {
  let current = task(1)
  let cancels = 0
  const app = setupApp('publisher', {
    routes: {
      'GET /tasks/:id': () => ({ task: current, orders: [order(11)], orders_next_cursor: null }),
      'POST /tasks/:id/cancel': () => {
        cancels += 1
        current = task(1, { status: 'cancelled', slots_untaken: 0, slots_refunded: 2, take_deadline_at: null, funnel: funnel({ taken: 1, awaiting_review: 1, refunded_slots: 2 }) })
        return current
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/task/detail', { id: '1' })
  const text = await page.waitForText('订单 #11')
  assert.match(text, /单价 ¥10\.00 · 服务费 ¥1\.00 · 共 3 个名额 · 冻结 ¥33\.00/)
  page.tap('.cancel')
  await page.waitForText('已取消')
  assert.strictEqual(cancels, 1)
  assert.match(app.wx.modals[0].content, /剩余 2 个未接名额将退回余额/)
  assert.ok(!page.has('.cancel'))
  page.tap('.order-11')
  await page.waitFor(() => app.wx.navigations.some(n => n[1] === '/pages/order/review?id=11'))
})

test('a task with more orders than its detail lists shows the older ones a page at a time', async t => {
  const asked = []
  const app = setupApp('publisher', {
    routes: {
      'GET /tasks/:id': () => ({ task: task(1, { quantity: 300, funnel: funnel({ taken: 203, in_progress: 203 }) }), orders: [order(303), order(302)], orders_next_cursor: '302' }),
      'GET /tasks/:id/orders': req => {
        asked.push(Object.assign({ id: req.params.id }, req.query))
        return req.query.cursor === '302' ? { items: [order(301), order(300)], next_cursor: '300' } : { items: [order(299)], next_cursor: null }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/task/detail', { id: '1' })
  const text = await page.waitForText('订单 #302')
  assert.match(text, /订单（203）/, 'the count is the task\'s, not the page\'s')
  assert.match(text, /加载更早的订单/)
  page.instance.onReachBottom()
  await page.waitForText('订单 #300')
  page.instance.onReachBottom()
  await page.waitForText('订单 #299')
  assert.ok(!/加载更早的订单/.test(page.text()), 'nothing more to load')
  page.instance.onReachBottom()
  assert.deepStrictEqual(asked.map(q => [q.id, q.cursor]), [['1', '302'], ['1', '300']])
  assert.match(page.text(), /订单 #303[^]*#302[^]*#301[^]*#300[^]*#299/)
})

test('the review queue shows proofs as they arrive, live, and approves', async t => {
  let orders = []
  const approved = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders': req => ({ items: req.query.need === 'review' ? orders : [], next_cursor: null }),
      'POST /orders/:id/approve': req => {
        approved.push(req.params.id)
        orders = []
        return order(11, { status: 'completed' })
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/review/index')
  await page.waitForText('没有待审核的订单')
  await page.waitFor(() => app.ctx.live.state === 'open')
  orders = [order(11)]
  app.wx.push('order.changed', { order_id: 11, task_id: 1, status: 'awaiting_review' })
  const text = await page.waitForText('已完成，见截图')
  assert.match(text, /任务1 自动通过 (19|20):\d\d 订单 #11 · 佣金 ¥10\.00/)
  await page.waitFor(() => page.find('.image >>> .img'), 'proof image')
  assert.strictEqual(app.wx.called('downloadFile').length, 0, 'the signed URL is shown as it is')
  page.tap('.approve')
  await page.waitForText('没有待审核的订单')
  assert.deepStrictEqual(approved, ['11'])
})

test('the review queue follows the pages across all my tasks and says when there are more than it shows', async t => {
  const asked = []
  const all = Array.from({ length: 600 }, (_, i) => order(1000 + i, { task_id: 1 + (i % 70), task: { id: 1 + (i % 70), title: `任务${1 + (i % 70)}`, instructions: '说明', attachment_kind: null, attachment: null } }))
  const app = setupApp('publisher', {
    routes: {
      'GET /orders': req => {
        asked.push(Object.assign({}, req.query))
        if (req.query.need !== 'review') return { items: [], next_cursor: null }
        const from = req.query.cursor ? all.findIndex(o => String(o.id) === req.query.cursor) + 1 : 0
        const items = all.slice(from, from + Number(req.query.limit))
        return { items, next_cursor: items.length === Number(req.query.limit) ? String(items[items.length - 1].id) : null }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/review/index')
  await page.waitForText('订单 #1499')
  const text = page.text()
  assert.match(text, /待处理的订单较多/)
  assert.doesNotMatch(text, /订单 #1500/, 'ten pages of 50 are shown')
  assert.match(text, /订单 #1000 [^]*订单 #1001/, 'in the order the server gave')
  const reviews = asked.filter(q => q.need === 'review')
  assert.strictEqual(reviews.length, 10)
  assert.deepStrictEqual(reviews.slice(0, 2).map(q => q.cursor), [undefined, '1049'])
})

test('rejecting needs a reason; the appeal and the arbitration show as they happen', async t => {
  let current = order(11)
  const rejects = []
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/reject': req => {
        rejects.push(req.body)
        current = order(11, { status: 'rejected', reject_reason: req.body.reason, rejected_at: at(0), appeal_deadline_at: at(600), deadline_at: at(600) })
        return current
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  await page.waitForText('已完成，见截图')
  page.tap('.reject')
  await page.waitFor(() => app.wx.toasts.includes('请填写驳回原因'))
  assert.strictEqual(rejects.length, 0)
  page.input('.reason', '截图不是本任务')
  page.tap('.reject')
  await page.waitForText('接单方申诉截止')
  assert.deepStrictEqual(rejects, [{ reason: '截图不是本任务' }])
  await page.waitFor(() => app.ctx.live.state === 'open')
  current = Object.assign({}, current, { status: 'appealing', appeal_reason: '我确实做了', deadline_at: null })
  app.wx.push('order.changed', { order_id: 11, task_id: 1, status: 'appealing' })
  await page.waitForText('接单方已申诉，等待平台仲裁')
  assert.match(page.text(), /接单方的申诉 我确实做了/)
  current = Object.assign({}, current, { status: 'failed', finished_by: 'arbitrate_publisher', decision_note: '凭证不符' })
  app.wx.push('order.changed', { order_id: 11, task_id: 1, status: 'failed' })
  await page.waitForText('订单失败（平台仲裁：发单方胜诉），费用已退回你的余额。平台说明：凭证不符')
})

test('approving an order the timer already approved says so and shows it completed', async t => {
  let current = order(11)
  const app = setupApp('publisher', {
    routes: {
      'GET /orders/:id': () => current,
      'POST /orders/:id/approve': () => {
        current = order(11, { status: 'completed', finished_by: 'review_timeout', deadline_at: null })
        return err(409, 'deadline_passed')
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/order/review', { id: '11' })
  await page.waitForText('审核截止')
  page.tap('.approve')
  await page.waitForText('订单已完成（超时自动通过）')
  assert.ok(app.wx.toasts.includes('已超过截止时间'))
})

test('the funnel component counts each step of a task', async t => {
  const app = setupApp('publisher', { start: false })
  t.after(app.close)
  const f = app.mount('components/funnel/funnel', { funnel: funnel({ taken: 5, in_progress: 1, awaiting_review: 2, completed: 2, refunded_slots: 3 }) })
  assert.strictEqual(f.text(), '5 已接单 1 进行中 2 待审核 2 已完成 0 已驳回 0 申诉中 0 已失败 0 已放弃 3 已退款名额')
})
