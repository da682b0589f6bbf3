// Drives an app running in app-host.js from the test: read the screen, tap, type, wait.
'use strict'
const path = require('path')
const { Worker } = require('worker_threads')
const { assertReadable } = require('../helpers/harness')

class AppDriver {
  /**
   * @param {'worker'|'publisher'} end
   * @param {{base: string, person: string, launchQuery?: object}} options
   */
  constructor(end, options) {
    this.end = end
    this.person = options.person
    this.pending = new Map()
    this.next = 0
    this.worker = new Worker(path.join(__dirname, 'app-host.js'), { workerData: Object.assign({ end }, options) })
    this.worker.on('message', ({ id, result, error }) => {
      const p = this.pending.get(id)
      this.pending.delete(id)
      if (!p) return
      if (error) p.reject(new Error(`${this.end} app (${this.person}): ${error}`))
      else p.resolve(result)
    })
    this.worker.on('error', err => {
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    })
  }

  call(op, args) {
    const id = ++this.next
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.worker.postMessage({ id, op, args })
    })
  }

  route() { return this.call('route') }
  async text() {
    const text = await this.call('text')
    assertReadable(text)
    return text
  }
  has(selector) { return this.call('has', { selector }) }
  tap(selector) { return this.call('tap', { selector }) }
  input(selector, value, event) { return this.call('input', { selector, value, event }) }
  invoke(method, ...args) { return this.call('call', { method, args }) }
  data() { return this.call('data') }
  go(url, how = 'navigateTo') { return this.call('go', { url, how }) }
  calls(name) { return this.call('calls', { name }) }
  toasts() { return this.call('toasts') }
  live() { return this.call('live') }
  dropNetwork() { return this.call('dropNetwork') }
  restoreNetwork() { return this.call('restoreNetwork') }

  /** Poll until `check()` holds (never a fixed sleep). */
  async until(check, what, timeoutMs = 20000) {
    const start = Date.now()
    let last
    for (;;) {
      try {
        last = await check()
        if (last) return last
      } catch (e) {
        last = e
      }
      if (Date.now() - start > timeoutMs) {
        const screen = await this.call('text').catch(e => e.message)
        const route = await this.call('route').catch(() => '?')
        throw new Error(`${this.end} app (${this.person}): timed out waiting for ${what}; on ${route} the screen shows: ${screen}${last instanceof Error ? `; last error: ${last.message}` : ''}`)
      }
      await new Promise(r => setTimeout(r, 50))
    }
  }

  /** Wait until the screen shows `fragment` (a string or a RegExp); returns the screen's text. */
  waitForText(fragment, timeoutMs) {
    const ok = text => (typeof fragment === 'string' ? text.includes(fragment) : fragment.test(text))
    return this.until(async () => {
      const text = await this.text()
      return ok(text) && text
    }, `“${fragment}”`, timeoutMs)
  }

  waitForRoute(route, timeoutMs) {
    return this.until(async () => (await this.route()) === route, `the ${route} screen`, timeoutMs)
  }

  async close() {
    await this.call('close').catch(() => {})
    await this.worker.terminate()
  }
}

module.exports = { AppDriver }
