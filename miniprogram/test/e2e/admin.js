// The operator's side of the journeys: the admin web panel over HTTP (a login form with its CSRF
// token, session cookie, then the panel's forms), exactly as a browser would post them.
'use strict'

class AdminPanel {
  constructor(base) {
    this.base = base
    this.cookies = new Map()
  }

  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }

  remember(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const i = pair.indexOf('=')
      this.cookies.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim())
    }
  }

  async get(path) {
    const res = await fetch(this.base + path, { headers: { Cookie: this.cookieHeader() }, redirect: 'manual' })
    this.remember(res)
    return { status: res.status, text: await res.text(), location: res.headers.get('location') }
  }

  async post(path, form) {
    const res = await fetch(this.base + path, {
      method: 'POST',
      headers: { Cookie: this.cookieHeader(), 'Content-Type': 'application/x-www-form-urlencoded', Origin: this.base },
      body: new URLSearchParams(form).toString(),
      redirect: 'manual',
    })
    this.remember(res)
    return { status: res.status, text: await res.text(), location: res.headers.get('location') }
  }

  static csrfIn(html) {
    const m = /name="csrf" value="([^"]+)"/.exec(html)
    if (!m) throw new Error('no CSRF token in the page')
    return m[1]
  }

  async login(username, password) {
    const page = await this.get('/admin/login')
    const res = await this.post('/admin/login', { username, password, csrf: AdminPanel.csrfIn(page.text), next: '/admin' })
    if (res.status !== 303) throw new Error(`admin login failed: ${res.status}`)
  }

  /** Submit a form of a panel page: the page gives the CSRF token, the form posts to `action`. */
  async submit(pagePath, action, form) {
    const page = await this.get(pagePath)
    if (page.status !== 200) throw new Error(`${pagePath}: ${page.status}`)
    const res = await this.post(action, Object.assign({ csrf: AdminPanel.csrfIn(page.text) }, form))
    if (res.status !== 303) throw new Error(`${action}: ${res.status} ${res.text.slice(0, 500)}`)
    return res
  }

  approveWithdrawal(id) {
    return this.submit('/admin/withdrawals', `/admin/withdrawals/${id}/approve`, {})
  }

  decideAppeal(orderId, decision, note) {
    return this.submit('/admin/appeals', `/admin/appeals/${orderId}/decide`, { decision, note })
  }
}

module.exports = { AdminPanel }
