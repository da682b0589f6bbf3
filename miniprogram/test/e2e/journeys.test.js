'use strict'
// End to end: the real pages of both apps, each in its own thread with a `wx` that speaks HTTP and
// WebSocket, against the real server (`python -m server`: SQLite in a temp folder, the WeChat
// sandbox, started here on a free port). The operator works through the admin panel over HTTP.
const { describe, test, before, after } = require('node:test')
const assert = require('node:assert')
const { startServer } = require('./server')
const { AppDriver } = require('./driver')
const { AdminPanel } = require('./admin')
const { loginRest, fund } = require('./rest')

const OWNER = { username: 'boss', password: 'correct-horse-battery-staple-9' }

describe('the Mini Programs against the real server', () => {
  let server
  let admin
  const apps = []
  const launch = (end, person, launchQuery) => {
    const app = new AppDriver(end, { base: server.base, person, launchQuery })
    apps.push(app)
    return app
  }
  const liveOpen = app => app.until(async () => (await app.live()).state === 'open', 'the live connection')

  before(async () => {
    server = await startServer({
      env: {
        // Generous windows (nothing here waits for a timer), and short referral settlement.
        MARKET__MARKET__TAKE_WINDOW_S: '600',
        MARKET__MARKET__COUNTDOWN_S: '600',
        MARKET__MARKET__REVIEW_WINDOW_S: '1200',
        MARKET__MARKET__APPEAL_WINDOW_S: '600',
        MARKET__SCHEDULER__REFERRAL_SETTLE_INTERVAL_S: '0.5',
        MARKET__SCHEDULER__PAYOUT_CHECK_INTERVAL_S: '2',
        // Journey (3) pays the inviter on the friend's first order: the base rule, without the
        // first-order qualification (referral_requires_first_order, tested in the Python suite).
        MARKET__MARKET__REFERRAL_REQUIRES_FIRST_ORDER: '0',
      },
    })
    server.createOwner(OWNER.username, OWNER.password)
    admin = new AdminPanel(server.base)
    await admin.login(OWNER.username, OWNER.password)
  })

  after(async () => {
    await Promise.all(apps.map(a => a.close()))
    if (server) await server.stop()
  })

  // Journey 1, shared with journey 2: a publisher and a worker on their phones.
  let publisher
  let worker
  let firstTaskId

  test('(1) recharge → publish → taken live → proof → approved live → wallet live → withdraw → operator pays → transfer confirmed', async () => {
    publisher = launch('publisher', 'pat')
    worker = launch('worker', 'wendy')
    await publisher.waitForText('可用余额（元） ¥0.00')
    await worker.waitForText('暂时没有可接的任务')
    await liveOpen(worker)
    await liveOpen(publisher)

    // The publisher recharges ¥50.00: WeChat Pay (the sandbox) takes the money, the server is told.
    await publisher.tap('.recharge')
    await publisher.waitForRoute('pages/recharge/index')
    await publisher.tap('.preset-5000')
    await publisher.tap('.pay')
    assert.match(await publisher.waitForText('充值成功'), /充值成功 ¥50\.00 当前可用余额 ¥50\.00/)

    // ...and publishes one ¥10.00 slot, seeing the total and the balance after before confirming.
    await publisher.tap('.publish')
    await publisher.waitForRoute('pages/publish/index')
    await publisher.waitForText('可用余额 ¥50.00')
    await publisher.input('.title-input', '关注公众号并截图')
    await publisher.input('.instructions', '关注“任务小站”，截图上传')
    await publisher.input('.price-input', '10')
    await publisher.input('.quantity-input', '1')
    assert.match(await publisher.waitForText('发布后余额 ¥39.00'), /每单服务费（10%） ¥1\.00 合计 = 数量 ×（单价 \+ 服务费） ¥11\.00/)
    await publisher.tap('.submit')
    await publisher.waitForRoute('pages/task/detail')
    assert.match(await publisher.waitForText('还没有人接单'), /关注公众号并截图 进行中 单价 ¥10\.00 · 服务费 ¥1\.00 · 共 1 个名额 · 冻结 ¥11\.00/)
    firstTaskId = (await publisher.data()).id

    // The worker's hall shows it without a refresh; the worker takes it.
    assert.match(await worker.waitForText('关注公众号并截图'), /关注公众号并截图 ¥10\.00 剩余 1\/1 个名额/)
    await worker.tap(`.task-${firstTaskId}`)
    await worker.waitForRoute('pages/task/detail')
    await worker.waitForText('关注“任务小站”，截图上传')
    await worker.tap('.take')
    await worker.waitForRoute('pages/order/detail')
    assert.match(await worker.waitForText('提交凭证'), /关注公众号并截图 进行中 佣金 ¥10\.00 提交截止 (09|10):\d\d/)

    // The publisher sees the take live.
    assert.match(await publisher.waitForText('订单 #'), /1 已接单 1 进行中/)

    // The worker submits a proof with an image.
    await worker.input('.proof-text', '已关注，截图见图')
    await worker.tap('.pick-proof')
    await worker.waitForText('图片已上传')
    await worker.tap('.submit')
    await worker.waitForText('等待发单方审核')

    // The publisher sees it arrive live and opens the proof.
    await publisher.waitForText(/订单 #\d+ 待审核/)
    const orderId = (await publisher.data()).orders[0].id
    await publisher.tap(`.order-${orderId}`)
    await publisher.waitForRoute('pages/order/review')
    await publisher.waitForText('已关注，截图见图')
    await publisher.until(() => publisher.has('.image >>> .img'), 'the proof image')

    // The worker watches the wallet while the publisher approves: it changes by itself.
    await worker.go('/pages/wallet/index', 'switchTab')
    await worker.waitForText('可用余额（元） ¥0.00')
    await publisher.tap('.approve')
    await publisher.waitForText('订单已完成（发单方通过），佣金 ¥10.00 已支付给接单方')
    assert.match(await worker.waitForText('可用余额（元） ¥10.00'), /累计收入 ¥10\.00/)

    // The worker withdraws ¥10.00 (fee 1% shown first).
    await worker.input('.amount', '10')
    await worker.waitForText('手续费 ¥0.10，预计到账 ¥9.90')
    await worker.tap('.submit-withdraw')
    assert.match(await worker.waitForText('提现中 ¥10.00'), /可用余额（元） ¥0\.00/)
    await worker.tap('.withdrawals')
    await worker.waitForRoute('pages/withdrawals/index')
    await worker.waitForText('待审核')
    const withdrawalId = (await worker.data()).items[0].id

    // The operator approves in the admin panel; WeChat then waits for the worker to confirm.
    await admin.approveWithdrawal(withdrawalId)
    await worker.waitForText('确认收款')
    await worker.tap('.confirm')
    await worker.until(async () => (await worker.toasts()).includes('已确认收款，等待到账'), 'the transfer confirmed')
    assert.match(await worker.waitForText('已到账'), /到账 ¥9\.90（手续费 ¥0\.10）/)
    assert.ok((await worker.calls('requestMerchantTransfer')).length === 1)
    await worker.go('/pages/wallet/index', 'switchTab')
    assert.match(await worker.waitForText('提现中 ¥0.00'), /可用余额（元） ¥0\.00/)
    await worker.tap('.ledger')
    assert.match(await worker.waitForText('提现到账'), /提现到账 .* 申请提现 -10\.00 .* 订单完成 \+10\.00/)
  })

  test('(2) reject by an acceptance criterion → appeal with evidence → the publisher answers → arbitration, both apps showing each step', async () => {
    assert.ok(publisher && worker, 'journey 1 ran')
    await publisher.go('/pages/publish/index')
    await publisher.waitForText('可用余额 ¥39.00')
    await publisher.input('.title-input', '下载并注册')
    await publisher.input('.instructions', '下载应用并完成注册，截图')
    await publisher.input('.price-input', '5')
    await publisher.input('.quantity-input', '1')
    await publisher.input('.criteria-input', '截图须显示注册成功\n须使用本人手机号')
    await publisher.waitForText('发布后余额 ¥33.50')
    await publisher.tap('.submit')
    await publisher.waitForRoute('pages/task/detail')
    await publisher.waitForText('还没有人接单')
    const taskId = (await publisher.data()).id

    await worker.go('/pages/index/index', 'switchTab')
    await worker.waitForText('下载并注册')
    await worker.tap(`.task-${taskId}`)
    await worker.waitForRoute('pages/task/detail')
    assert.match(await worker.waitForText('立即接单'), /验收标准（发布者驳回时须指明未达到哪一条） 1\. 截图须显示注册成功 2\. 须使用本人手机号/)
    await worker.tap('.take')
    await worker.waitForRoute('pages/order/detail')
    await worker.waitForText('提交凭证')
    await worker.input('.proof-text', '已注册')
    await worker.tap('.submit')
    await worker.waitForText('等待发单方审核')

    await publisher.waitForText(/订单 #\d+ 待审核/)
    const orderId = (await publisher.data()).orders[0].id
    await publisher.tap(`.order-${orderId}`)
    await publisher.waitForText('驳回时请选择凭证未达到的验收标准')
    // Rejecting needs the criterion the proof fails; the publisher picks the first and adds a detail.
    await publisher.tap('.reject')
    await publisher.until(async () => (await publisher.toasts()).some(x => x.startsWith('请选择凭证未达到的验收标准')), 'a criterion asked for')
    await publisher.tap('.criterion-0')
    await publisher.input('.reason', '截图中没有注册成功的页面')
    await publisher.tap('.reject')
    assert.match(await publisher.waitForText('接单方申诉截止'), /已驳回 .* 驳回原因 未达到验收标准：截图须显示注册成功 补充说明： 截图中没有注册成功的页面/)

    // The worker sees the rejection live, with the criterion, the reason and the appeal countdown, and appeals.
    assert.match(await worker.waitForText('截图中没有注册成功的页面'), /已驳回 .* 申诉截止 (09|10):\d\d .* 驳回原因 未达到验收标准：截图须显示注册成功 补充说明： 截图中没有注册成功的页面 驳回于 .*（北京时间）/)
    assert.match(await worker.text(), /请在 \d{4}-\d\d-\d\d \d\d:\d\d（北京时间）前申诉/)
    await worker.input('.appeal-reason', '注册成功的短信截图在这里')
    await worker.tap('.pick-evidence')
    await worker.until(async () => (await worker.data()).evidenceRef, 'the evidence uploaded')
    await worker.tap('.appeal')
    await worker.waitForText('申诉已提交，等待平台仲裁')

    assert.match(await publisher.waitForText('接单方已申诉，等待平台仲裁'), /接单方的申诉 注册成功的短信截图在这里/)
    await publisher.until(() => publisher.has('.exchange >>> .evidence >>> .img'), 'the evidence image')

    // The publisher answers the appeal once, with an image; the server keeps it on the order.
    await publisher.input('.answer-input', '短信截图里的手机号不是接单账号的')
    await publisher.tap('.pick-answer-image')
    await publisher.waitForText('图片已上传')
    await publisher.tap('.answer')
    assert.match(await publisher.waitForText('你已回应'), /我的回应 短信截图里的手机号不是接单账号的 回应于 .*（北京时间）/)
    await publisher.until(() => publisher.has('.exchange >>> .answer-image >>> .img'), 'the answer image')
    assert.ok(!(await publisher.has('.answer-form')), 'one answer only')

    // The worker sees the answer beside the appeal, live (order.answered).
    assert.match(await worker.waitForText('短信截图里的手机号不是接单账号的'), /我的申诉 注册成功的短信截图在这里 .* 发单方的回应 短信截图里的手机号不是接单账号的/)
    await worker.until(() => worker.has('.exchange >>> .answer-image >>> .img'), 'the answer image on the worker\'s phone')

    // The operator decides for the worker: both apps show it.
    await admin.decideAppeal(orderId, 'worker', '短信截图证明已注册')
    assert.match(await worker.waitForText('订单已完成，佣金 ¥5.00 已入账（平台仲裁：接单方胜诉）'), /裁决结果 平台仲裁：接单方胜诉 你胜诉：佣金已入账 说明： 短信截图证明已注册/)
    assert.match(await publisher.waitForText('订单已完成（平台仲裁：接单方胜诉），佣金 ¥5.00 已支付给接单方'), /我的回应 短信截图里的手机号不是接单账号的 .* 裁决结果 平台仲裁：接单方胜诉 接单方胜诉：佣金已支付给接单方/)
  })

  test('(3) an invitation: the shared scene binds the inviter, and the reward shows on the inviter’s page', async () => {
    const inviter = launch('worker', 'ivy')
    await inviter.waitForText('任务')
    await inviter.go('/pages/invite/index')
    await inviter.waitForText('我邀请的人（0）')
    const { inviteCode } = await inviter.data()
    const share = await inviter.invoke('onShareAppMessage')
    assert.strictEqual(share.path, `/pages/index/index?scene=${inviteCode}`)

    // A friend opens the shared card: the launch query carries the scene.
    const friend = launch('worker', 'ned', { scene: encodeURIComponent(inviteCode) })
    await friend.waitForText('任务')
    await friend.go('/pages/profile/index', 'switchTab')
    await friend.waitForText('邀请码')
    await friend.input('.nickname', '小内')
    await friend.input('.nickname', '小内', 'blur')
    await friend.until(async () => (await friend.toasts()).includes('昵称已保存'), 'the nickname saved')
    assert.match(await inviter.until(async () => {
      await inviter.invoke('onPullDownRefresh')
      const text = await inviter.text()
      return /我邀请的人（1） 小内/.test(text) && text
    }, 'the invitee on the page'), /小内 .* 加入 ¥0\.00/)

    // The friend completes an order; the inviter's page shows the reward (2% of ¥10.00).
    const pub = await loginRest(server.base, 'publisher', 'pia')
    await fund(server.base, pub, 2000)
    const task = await pub.post('/tasks', { title: '邀请奖励任务', instructions: '做完即可', unit_price_fen: 1000, quantity: 1, request_id: 'invite-task' })
    await friend.go('/pages/index/index', 'switchTab')
    await friend.waitForText('邀请奖励任务')
    await friend.tap(`.task-${task.id}`)
    await friend.waitForRoute('pages/task/detail')
    await friend.waitForText('立即接单')
    await friend.tap('.take')
    await friend.waitForRoute('pages/order/detail')
    await friend.waitForText('提交凭证')
    await friend.tap('.submit')
    await friend.waitForText('等待发单方审核')
    const order = (await pub.get(`/tasks/${task.id}`)).orders[0]
    await pub.post(`/orders/${order.id}/approve`)
    await friend.waitForText('订单已完成，佣金 ¥10.00 已入账')
    assert.match(await inviter.until(async () => {
      await inviter.invoke('onPullDownRefresh')
      const text = await inviter.text()
      return /累计邀请奖励 ¥0\.20/.test(text) && text
    }, 'the reward'), /小内 .* 加入 ¥0\.20/)
    await inviter.go('/pages/wallet/index', 'switchTab')
    await inviter.waitForText('邀请奖励 ¥0.20')
  })

  test('(4) a dropped socket during changes: after the reconnect each app shows exactly the server’s state', async () => {
    const watcher = launch('worker', 'dora')
    const owner = launch('publisher', 'pam')
    await watcher.waitForText('任务')
    await liveOpen(watcher)
    await owner.go('/pages/tasks/index', 'switchTab')
    await owner.waitForText('没有这类任务')
    await liveOpen(owner)

    // Pam's second phone (REST) publishes while both apps watch; another worker takes slots.
    const pam = await loginRest(server.base, 'publisher', 'pam')
    const walt = await loginRest(server.base, 'worker', 'walt')
    const dora = await loginRest(server.base, 'worker', 'dora')
    await fund(server.base, pam, 10000)
    const a = await pam.post('/tasks', { title: '断线前的任务', instructions: '说明', unit_price_fen: 300, quantity: 3, request_id: 'drop-a' })
    await watcher.waitForText('断线前的任务 ¥3.00 剩余 3/3 个名额')
    await owner.waitForText('断线前的任务')

    // Both phones lose the network; meanwhile the market moves on.
    await watcher.dropNetwork()
    await owner.dropNetwork()
    await watcher.until(async () => (await watcher.live()).state !== 'open', 'the worker app noticing the drop')
    await owner.until(async () => (await owner.live()).state !== 'open', 'the publisher app noticing the drop')
    const b = await pam.post('/tasks', { title: '断线时发布的任务', instructions: '说明', unit_price_fen: 450, quantity: 2, request_id: 'drop-b' })
    const taken = await walt.post(`/tasks/${a.id}/take`)
    await walt.post(`/orders/${taken.id}/submit`, { proof_text: '完成' })
    const c = await pam.post('/tasks', { title: '断线时又取消的任务', instructions: '说明', unit_price_fen: 200, quantity: 1, request_id: 'drop-c' })
    await pam.post(`/tasks/${c.id}/cancel`)
    await watcher.restoreNetwork()
    await owner.restoreNetwork()

    // After the reconnect each screen is the server's state, task by task.
    const hall = (await dora.get('/hall?limit=50')).items.map(t => `${t.title} ¥${(t.unit_price_fen / 100).toFixed(2)} 剩余 ${t.slots_untaken}/${t.quantity} 个名额`)
    assert.deepStrictEqual(hall.slice(0, 2), ['断线时发布的任务 ¥4.50 剩余 2/2 个名额', '断线前的任务 ¥3.00 剩余 2/3 个名额'])
    await liveOpen(watcher)
    const screen = await watcher.until(async () => {
      const text = await watcher.text()
      return hall.every(line => text.includes(line)) && !text.includes('断线时又取消的任务') && text
    }, 'the hall as the server has it')
    assert.ok(screen.indexOf('断线时发布的任务') < screen.indexOf('断线前的任务'), 'newest first')

    const mine = (await pam.get('/tasks?limit=50')).items
    await liveOpen(owner)
    await owner.until(async () => {
      const { tasks } = await owner.data()
      const shown = tasks.map(t => [t.id, t.status, t.slotsUntaken, t.funnel.taken, t.funnel.awaiting_review, t.funnel.refunded_slots])
      const truth = mine.map(t => [t.id, t.status, t.slots_untaken, t.funnel.taken, t.funnel.awaiting_review, t.funnel.refunded_slots])
      return JSON.stringify(shown) === JSON.stringify(truth)
    }, 'my tasks as the server has them')
    const text = await owner.text()
    assert.match(text, /断线时又取消的任务 已取消/)
    assert.match(text, /断线前的任务 进行中 .* 1 已接单 0 进行中 1 待审核/)

    // And it keeps following live events after the reconnect.
    await pam.post(`/orders/${taken.id}/approve`)
    await owner.waitForText('1 已接单 0 进行中 0 待审核 1 已完成')
    await walt.post(`/tasks/${b.id}/take`)
    await watcher.waitForText('断线时发布的任务 ¥4.50 剩余 1/2 个名额')
  })
})
