'use strict'
// Screens both apps have (wallet, ledger, withdrawals, invitations, profile, banned), in each app.
const test = require('node:test')
const assert = require('node:assert')
const { setupApp } = require('../helpers/harness')
const { err, DEFAULT_CONFIG } = require('../helpers/fake-wx')

// One app per process: WeChat's compiled templates keep global state, so the worker's and the
// publisher's pages cannot be rendered in the same process (the harness refuses it).
module.exports = function sharedPageTests(end) {
const wallet = over => Object.assign({ available_fen: 250000, withdrawing_fen: 1000, total_earned_fen: 300000, referral_earned_fen: 1234, total_recharged_fen: 500000, total_spent_fen: 2000 }, over)
const withdrawal = over => Object.assign({ id: 5, request_id: 'w-1', amount_fen: 10000, fee_fen: 100, payout_fen: 9900, status: 'pending', method: null, reason: null, package_info: null, transfer: null, created_at: '2026-11-30T02:00:00Z', decided_at: null, finished_at: null }, over)

{
  test(`${end}: the wallet shows yuan and the withdrawal rules, and previews the fee before confirming`, async t => {
    const requests = []
    let balance = wallet()
    const app = setupApp(end, {
      routes: {
        'GET /wallet': () => balance,
        'POST /withdrawals': req => {
          requests.push(req.body)
          balance = wallet({ available_fen: 240000, withdrawing_fen: 11000 })
          return { status: 201, body: withdrawal() }
        },
      },
    })
    t.after(app.close)
    const page = app.open('pages/wallet/index')
    const text = await page.waitForText('2500.00')
    assert.match(text, /可用余额（元） ¥2500\.00 提现中 ¥10\.00/)
    assert.match(text, end === 'worker' ? /累计收入 ¥3000\.00/ : /累计充值 ¥5000\.00/)
    assert.match(text, /最低提现 ¥10\.00，手续费 1%，每日上限 ¥5000\.00/)
    assert.strictEqual(page.has('.recharge'), end === 'publisher')

    page.input('.amount', '5')
    page.tap('.submit-withdraw')
    await page.waitFor(() => app.wx.toasts.includes('最低提现 ¥10.00'), 'minimum enforced')
    page.input('.amount', '100')
    await page.waitForText('手续费 ¥1.00，预计到账 ¥99.00')
    page.tap('.submit-withdraw')
    await page.waitFor(() => requests.length === 1, 'withdrawal sent')
    assert.match(app.wx.modals[0].content, /提现 ¥100\.00，手续费 ¥1\.00，预计到账 ¥99\.00/)
    assert.strictEqual(app.wx.called('requestSubscribeMessage').length, 0, 'no template configured: no prompt')
    assert.strictEqual(requests[0].amount_fen, 10000)
    assert.match(requests[0].request_id, /^w-/)
    await page.waitForText('¥2400.00')
  })
}

test(`${end}: a withdrawal asks for the payout's subscription messages in the confirmation's tap, and only when confirmed`, async t => {
  const requests = []
  const subscriptions = [{ event: 'withdrawal_paid', template_id: 'T-PAID', page: 'pages/wallet/index' }, { event: 'withdrawal_rejected', template_id: 'T-REJ', page: 'pages/wallet/index' }]
  const app = setupApp(end, {
    routes: {
      'GET /config': () => Object.assign({}, DEFAULT_CONFIG, { subscriptions, now: new Date().toISOString() }),
      'GET /wallet': () => wallet(),
      'POST /withdrawals': req => {
        requests.push(req.body)
        return { status: 201, body: withdrawal() }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/wallet/index')
  await page.waitForText('2500.00')
  page.input('.amount', '100')
  await page.waitForText('预计到账 ¥99.00')
  app.wx.answerModal(false)
  page.tap('.submit-withdraw')
  await page.waitFor(() => app.wx.modalsAnswered === 1, 'confirmation cancelled')
  assert.strictEqual(app.wx.called('requestSubscribeMessage').length, 0, 'a cancelled withdrawal asks for no subscription')
  assert.strictEqual(requests.length, 0)
  page.tap('.submit-withdraw')
  await page.waitFor(() => requests.length === 1, 'withdrawal sent')
  const order = app.wx.sequence().filter(n => ['showModal', 'requestSubscribeMessage', 'POST /withdrawals'].includes(n))
  assert.deepStrictEqual(order, ['showModal', 'showModal', 'requestSubscribeMessage', 'POST /withdrawals'])
  assert.deepStrictEqual(app.wx.subscribePrompts, [{ tmplIds: ['T-PAID', 'T-REJ'], inDialogTap: true }])
})

test('a withdrawal WeChat must confirm calls wx.requestMerchantTransfer with the server arguments', async t => {
  const transfer = { mchId: '1900000001', appId: 'wxworker', package: 'PKG-1', openId: 'o-abc' }
  const app = setupApp(end, {
    routes: {
      'GET /wallet': () => wallet(),
      'POST /withdrawals': () => ({ status: 201, body: withdrawal({ status: 'paying', transfer, package_info: 'PKG-1' }) }),
      'GET /withdrawals': () => ({ items: [withdrawal({ status: 'paying', transfer })], next_cursor: null }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/wallet/index')
  await page.waitForText('2500.00')
  page.input('.amount', '100')
  page.tap('.submit-withdraw')
  await page.waitFor(() => app.wx.called('requestMerchantTransfer').length === 1, 'transfer confirmed')
  const args = app.wx.called('requestMerchantTransfer')[0]
  assert.deepStrictEqual({ mchId: args.mchId, appId: args.appId, package: args.package, openId: args.openId }, transfer)
  await page.waitFor(() => app.wx.toasts.includes('已确认收款，等待到账'))

  const list = app.open('pages/withdrawals/index')
  await list.waitForText('打款中')
  app.wx.behaviour.requestMerchantTransfer = 'fail'
  list.tap('.confirm')
  await list.waitFor(() => app.wx.toasts.includes('未确认收款，可在提现记录中再次确认'))
})

test('a refused withdrawal says why in Chinese and the same request id is not reused for the next try', async t => {
  const ids = []
  const app = setupApp(end, {
    routes: {
      'GET /wallet': () => wallet(),
      'POST /withdrawals': req => {
        ids.push(req.body.request_id)
        return err(400, 'daily_withdrawal_cap')
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/wallet/index')
  await page.waitForText('2500.00')
  page.input('.amount', '100')
  page.tap('.submit-withdraw')
  await page.waitFor(() => app.wx.toasts.includes('已超过今日提现额度，请明天再试'))
  page.tap('.submit-withdraw')
  await page.waitFor(() => ids.length === 2)
  assert.notStrictEqual(ids[0], ids[1])
})

test('a payout of ¥2000 or more asks for the real name and sends it; below, no name is sent', async t => {
  const requests = []
  const app = setupApp(end, {
    routes: {
      'GET /wallet': () => wallet(),
      'POST /withdrawals': req => {
        requests.push(req.body)
        return { status: 201, body: withdrawal({ amount_fen: req.body.amount_fen }) }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/wallet/index')
  await page.waitForText('2500.00')
  page.input('.amount', '1000')
  await page.waitForText('预计到账 ¥990.00')
  assert.strictEqual(page.has('.real-name'), false, 'below ¥2000: no name asked')
  page.tap('.submit-withdraw')
  await page.waitFor(() => requests.length === 1, 'small withdrawal sent')
  assert.strictEqual('real_name' in requests[0], false)
  await page.waitFor(() => app.wx.toasts.includes('已提交，等待审核'), 'the first one done')

  page.input('.amount', '2100') // fee ¥21.00: ¥2079.00 arrives, over WeChat's ¥2000
  await page.waitForText('预计到账 ¥2079.00')
  assert.ok(page.has('.real-name'), 'the name input appears')
  page.tap('.submit-withdraw')
  await page.waitFor(() => app.wx.toasts.includes('到账 ¥2000.00 及以上请填写收款人真实姓名'), 'name required first')
  assert.strictEqual(requests.length, 1, 'nothing sent without the name')
  page.input('.real-name', ' 王小明 ')
  page.tap('.submit-withdraw')
  await page.waitFor(() => requests.length === 2, 'large withdrawal sent')
  assert.deepStrictEqual({ amount_fen: requests[1].amount_fen, real_name: requests[1].real_name }, { amount_fen: 210000, real_name: '王小明' })
  await page.waitFor(() => !page.has('.real-name'), 'the form is cleared, the name not kept')
})

test('the server asking for the real name shows the input and says why in Chinese', async t => {
  const app = setupApp(end, {
    routes: {
      'GET /wallet': () => wallet(),
      'POST /withdrawals': () => err(400, 'real_name_required', { threshold_fen: 200000, field: 'real_name' }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/wallet/index')
  await page.waitForText('2500.00')
  page.input('.amount', '100')
  page.tap('.submit-withdraw')
  await page.waitFor(() => app.wx.toasts.includes('到账 ¥2000.00 及以上需填写收款人微信实名'), 'the error in Chinese')
  assert.ok(page.has('.real-name'))
})

test('the wallet updates live when money arrives', async t => {
  let balance = wallet({ available_fen: 0 })
  const app = setupApp(end, { routes: { 'GET /wallet': () => balance } })
  t.after(app.close)
  const page = app.open('pages/wallet/index')
  await page.waitForText('¥0.00')
  await page.waitFor(() => app.ctx.live.state === 'open')
  balance = wallet({ available_fen: 1250 })
  app.wx.push('wallet.changed', { reason: 'order_completed', amount_fen: 1250 })
  await page.waitForText('¥12.50')
})

test('the ledger lists postings in yuan with Beijing time and loads older ones at the bottom', async t => {
  const posting = (id, kind, amount, after) => ({ id, at: '2026-11-30T16:30:00Z', account: 'available', kind, amount_fen: amount, balance_after_fen: after, task_id: 3, order_id: id, memo: null })
  const app = setupApp(end, {
    routes: {
      'GET /ledger': req => (req.query.cursor === '9' ? { items: [posting(8, 'withdraw_request', -1000, 0)], next_cursor: null } : { items: [posting(10, 'order_complete', 1250, 2250), posting(9, 'referral_settle', 24, 1000)], next_cursor: '9' }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/ledger/index')
  const text = await page.waitForText('订单完成')
  assert.match(text, /订单完成 \+12\.50 2026-12-01 00:30 · 可用余额 余额 ¥22\.50 订单 #10/)
  assert.match(text, /邀请奖励 \+0\.24/)
  page.instance.onReachBottom()
  await page.waitForText('申请提现 -10.00')
  await page.waitForText('没有更多了')
})

test('an empty ledger says so', async t => {
  const app = setupApp(end, { routes: { 'GET /ledger': () => ({ items: [], next_cursor: null }) } })
  t.after(app.close)
  const page = app.open('pages/ledger/index')
  await page.waitForText('还没有收支记录')
})

test('withdrawal history shows state, fee and reason, and updates live', async t => {
  let items = [withdrawal({ id: 6, status: 'rejected', reason: '信息不符' }), withdrawal({ id: 5, status: 'paid', finished_at: '2026-11-30T03:00:00Z' })]
  const app = setupApp(end, { routes: { 'GET /withdrawals': () => ({ items, next_cursor: null }) } })
  t.after(app.close)
  const page = app.open('pages/withdrawals/index')
  const text = await page.waitForText('已驳回')
  assert.match(text, /原因：信息不符/)
  assert.match(text, /已到账 .* 到账 ¥99\.00（手续费 ¥1\.00）· 2026-11-30 11:00/)
  await page.waitFor(() => app.ctx.live.state === 'open')
  items = [withdrawal({ id: 7, status: 'pending' })].concat(items)
  app.wx.push('withdrawal.changed', { withdrawal_id: 7, status: 'pending' })
  await page.waitForText('待审核')
})

test('invitations: code to copy, the share card carries the scene, the poster, invitees with what they earned', async t => {
  const app = setupApp(end, {
    routes: {
      'GET /invitations': () => ({ invite_code: 'K7Q2MX', scene: 'K7Q2MX', share_path: 'pages/index/index?scene=K7Q2MX', referral_earned_fen: 48, invitees_count: 2, invitees: [{ id: 4, nickname: '小红', joined_at: '2026-11-29T01:00:00Z', earned_fen: 48 }, { id: 5, nickname: '', joined_at: '2026-11-29T02:00:00Z', earned_fen: 0 }] }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/invite/index')
  const text = await page.waitForText('K7Q2MX')
  assert.match(text, end === 'worker' ? /好友每完成一单，你获得单价的 2%/ : /好友每完成一单，你获得发布服务费的 10%/)
  assert.match(text, /累计邀请奖励 ¥0\.48 .* 我邀请的人（2） 小红 2026-11-29 09:00 加入 ¥0\.48 微信用户/)
  page.tap('.copy')
  await page.waitFor(() => app.wx.called('setClipboardData').length)
  assert.strictEqual(app.wx.called('setClipboardData')[0].data, 'K7Q2MX')
  assert.deepStrictEqual(page.instance.onShareAppMessage(), { title: end === 'worker' ? '一起来做任务赚佣金' : '一起来发布任务', path: '/pages/index/index?scene=K7Q2MX' })
  page.tap('.poster-btn')
  await page.waitFor(() => page.has('.qrcode'), 'poster')
  assert.match(app.wx.called('downloadFile')[0].url, new RegExp(`/api/v1/${end}/invitations/qrcode$`))
  // The poster is drawn: the Mini Program code just downloaded, and the invite code in words.
  const drawn = app.wx.canvases[0].drawn
  assert.ok(drawn.some(d => d[0] === 'drawImage' && d[1] === '/tmp/download-qrcode.png'), JSON.stringify(drawn))
  assert.ok(drawn.some(d => d[0] === 'fillText' && d[1] === '邀请码 K7Q2MX'))
  assert.strictEqual(page.data.posterSrc, '/tmp/poster-0.png')
  page.tap('.save')
  await page.waitFor(() => app.wx.toasts.includes('已保存到相册'))
  assert.strictEqual(app.wx.called('saveImageToPhotosAlbum')[0].filePath, '/tmp/poster-0.png')
})

test('invitations: the count and the total cover every invitee, also beyond the newest listed', async t => {
  const app = setupApp(end, {
    routes: {
      'GET /invitations': () => ({ invite_code: 'K7Q2MX', scene: 'K7Q2MX', share_path: 'pages/index/index?scene=K7Q2MX', referral_earned_fen: 123456, invitees_count: 812, invitees: [{ id: 900, nickname: '小红', joined_at: '2026-11-29T01:00:00Z', earned_fen: 48 }] }),
    },
  })
  t.after(app.close)
  const page = app.open('pages/invite/index')
  const text = await page.waitForText('K7Q2MX')
  assert.match(text, /累计邀请奖励 ¥1234\.56/)
  assert.match(text, /我邀请的人（812） 显示最近邀请的 1 人/)
})

test('profile: the nickname typed is saved, the avatar chosen is uploaded and set', async t => {
  const patches = []
  const avatars = []
  const app = setupApp(end, {
    routes: {
      'PATCH /me': req => {
        patches.push(req.body)
        return { id: 1, end, nickname: req.body.nickname, invite_code: 'INV1' }
      },
      'PUT /me/avatar': req => {
        avatars.push(req.body)
        return { id: 1, nickname: '小明' }
      },
    },
  })
  t.after(app.close)
  const page = app.open('pages/profile/index')
  const text = await page.waitForText('邀请码 INV1')
  assert.match(text, end === 'worker' ? /我的订单 › 钱包 › 账户明细 › 提现记录 › 邀请好友/ : /我的任务 › 钱包 › 账户明细 › 提现记录 › 邀请好友/)
  page.input('.nickname', '张老板')
  page.input('.nickname', '张老板', 'blur')
  await page.waitFor(() => app.wx.toasts.includes('昵称已保存'))
  assert.deepStrictEqual(patches, [{ nickname: '张老板' }])
  page.trigger('.avatar-btn', 'chooseavatar', { avatarUrl: '/tmp/avatar.png' })
  await page.waitFor(() => app.wx.toasts.includes('头像已更新'))
  assert.deepStrictEqual(avatars, [{ ref: 'ref-1' }])
  let logouts = 0
  app.wx.route('POST /logout', () => {
    logouts += 1
    return { status: 204, body: '' }
  })
  page.tap('.logout')
  await page.waitFor(() => app.wx.toasts.includes('已退出所有设备的登录'))
  assert.strictEqual(logouts, 1)
  assert.match(app.wx.modals[0].content, /所有手机上本账号的登录都会失效/)
  await page.waitFor(() => app.ctx.live.state === 'open', 'live again after logging back in')
  page.tap('.wallet')
  await page.waitFor(() => app.wx.navigations.length)
  assert.deepStrictEqual(app.wx.navigations[0], ['navigateTo', '/pages/wallet/index'])
})

test('a banned user is sent to the banned screen, which says why', async t => {
  const app = setupApp(end, { routes: { 'GET /ledger': () => err(403, 'user_banned', { reason: '多次提交虚假凭证' }) } })
  t.after(app.close)
  const ledger = app.open('pages/ledger/index')
  await ledger.waitFor(() => app.wx.navigations.some(n => n[0] === 'reLaunch'), 'sent to the banned screen')
  assert.deepStrictEqual(app.wx.navigations.find(n => n[0] === 'reLaunch'), ['reLaunch', '/pages/banned/index'])
  const page = app.open('pages/banned/index')
  assert.match(await page.waitForText('你的账号已被封禁'), /原因：多次提交虚假凭证/)
  app.wx.route('POST /login', () => err(403, 'user_banned'))
  page.tap('.retry')
  await page.waitFor(() => app.wx.toasts.includes('账号仍处于封禁状态'))
})

test('an expired session logs in again silently and repeats the call', async t => {
  let logins = 0
  const app = setupApp(end, {
    routes: {
      'POST /login': () => ({ token: `fresh-${++logins}`, user: { id: 1 } }),
      'GET /ledger': req => (req.header.Authorization === 'Bearer fresh-2' ? { items: [], next_cursor: null } : err(401, 'token_expired')),
    },
  })
  t.after(app.close)
  const page = app.open('pages/ledger/index')
  await page.waitForText('还没有收支记录')
  assert.strictEqual(logins, 2) // the launch login, then the silent one
})
}
