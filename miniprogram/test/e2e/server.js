// Starts the real server (`python -m server`, the repository's .venv) for the end-to-end journeys:
// SQLite in a temporary folder, the WeChat sandbox, a free port, timers short through the
// environment (MARKET__MARKET__...). Resolves when /healthz answers.
'use strict'
const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')

// E2E_SERVER_REPO runs the journeys against another checkout's server (e.g. a branch being merged).
const REPO = process.env.E2E_SERVER_REPO ? path.resolve(process.env.E2E_SERVER_REPO) : path.resolve(__dirname, '../../..')
const PYTHON = fs.existsSync(path.join(REPO, '.venv/bin/python')) ? path.join(REPO, '.venv/bin/python') : 'python3'

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * @param {{env?: Record<string, string>, timeoutMs?: number}} options
 * @returns {Promise<{base: string, port: number, dir: string, env: object, stop: () => Promise<void>, logs: () => string, createOwner: (name: string, password: string) => void}>}
 */
async function startServer(options = {}) {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-e2e-'))
  const env = Object.assign({}, process.env, {
    PORT: String(port),
    DATABASE_URL: `sqlite://${dir}/market.sqlite3`,
    REDIS_URL: '',
    MARKET_PRODUCTION: 'false',
    MARKET__HOST: '127.0.0.1',
    MARKET__WORKERS: '1',
    MARKET__UPLOADS_DIR: path.join(dir, 'uploads'),
    MARKET__SCHEDULER__EMBEDDED: 'true',
    MARKET__WECHAT__SANDBOX: 'true',
    PYTHONDONTWRITEBYTECODE: '1',
  }, options.env || {})
  delete env.TEST_DATABASE_URL
  delete env.TEST_REDIS_URL
  let output = ''
  // Its own process group: Sanic runs its workers (and the scheduler) as child processes, and stop()
  // must end them all, or they would keep the pipes, and so this test process, alive.
  const child = spawn(PYTHON, ['-m', 'server'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const signalGroup = signal => {
    try {
      process.kill(-child.pid, signal)
    } catch (e) {
      /* already gone */
    }
  }
  child.stdout.on('data', d => (output += d))
  child.stderr.on('data', d => (output += d))
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + (options.timeoutMs || 60000)
  for (;;) {
    if (child.exitCode !== null) {
      signalGroup('SIGKILL')
      throw new Error(`server exited (${child.exitCode}):\n${output.slice(-3000)}`)
    }
    try {
      const r = await fetch(`${base}/healthz`)
      if (r.ok) break
    } catch (e) {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      signalGroup('SIGKILL')
      throw new Error(`server did not start:\n${output.slice(-3000)}`)
    }
    await new Promise(r => setTimeout(r, 100))
  }
  return {
    base,
    port,
    dir,
    env,
    logs: () => output,
    /** An operator for the admin panel (`python -m server create-owner`, README). */
    createOwner(username, password) {
      execFileSync(PYTHON, ['-m', 'server', 'create-owner', '--username', username, '--password-stdin'], { cwd: REPO, env, input: password + '\n', stdio: ['pipe', 'ignore', 'pipe'] })
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise(r => child.once('exit', r))
        signalGroup('SIGINT')
        const timer = setTimeout(() => signalGroup('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
      }
      signalGroup('SIGKILL') // whatever of the group is left
      child.stdout.destroy()
      child.stderr.destroy()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

module.exports = { startServer, freePort, REPO, PYTHON }
