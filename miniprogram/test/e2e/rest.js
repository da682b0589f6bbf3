// A second client of the same server, outside the apps: what other people (or the same person on
// another phone) do while an app watches, and the server's state to compare a screen with.
'use strict'

let codes = 0

async function loginRest(base, end, person) {
  const res = await fetch(`${base}/api/v1/${end}/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code: `${person}-rest${++codes}${Date.now()}` }),
  })
  const body = await res.json()
  if (res.status !== 200) throw new Error(`login ${person}: ${res.status} ${JSON.stringify(body)}`)
  const call = async (method, path, data) => {
    const r = await fetch(`${base}/api/v1/${end}${path}`, {
      method,
      headers: Object.assign({ Authorization: `Bearer ${body.token}` }, data ? { 'Content-Type': 'application/json' } : {}),
      body: data ? JSON.stringify(data) : undefined,
    })
    const json = await r.json()
    if (r.status >= 400) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`)
    return json
  }
  return { user: body.user, token: body.token, get: p => call('GET', p), post: (p, d) => call('POST', p, d || {}) }
}

/** A publisher with money: recharge through the sandbox (the user "pays" on the sandbox). */
async function fund(base, publisher, amountFen) {
  const r = await publisher.post('/recharges', { amount_fen: amountFen, request_id: `fund-${Date.now()}-${Math.random()}` })
  const paid = await fetch(`${base}/sandbox/pay/_simulate/pay`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ out_trade_no: r.out_trade_no, wait: true }) })
  if (!paid.ok) throw new Error(`sandbox pay: ${paid.status}`)
  for (let i = 0; i < 100; i++) {
    if ((await publisher.get(`/recharges/${r.recharge_id}`)).status === 'paid') return
    await new Promise(res => setTimeout(res, 100))
  }
  throw new Error('recharge never credited')
}

module.exports = { loginRest, fund }
