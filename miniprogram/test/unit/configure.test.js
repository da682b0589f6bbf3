'use strict'
// `npm run configure` (scripts/configure.js): each app's project.config.json gets the AppID the
// server is configured with (config.yaml wechat.<end>.appid, or MARKET__WECHAT__<END>__APPID, read by
// `python -m server appids`); not configured = touristappid, the committed default for the simulator.
const test = require('node:test')
const assert = require('node:assert')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { execFileSync } = require('child_process')
const { configure, DEFAULT_APPID } = require('../../scripts/configure')

const ROOT = path.join(__dirname, '../..')
const SCRIPT = path.join(ROOT, 'scripts/configure.js')
const WORKER = 'wx0123456789abcdef'
const PUBLISHER = 'wxfedcba9876543210'

/** A folder with a copy of both apps' project.config.json. */
function copyOfProjects(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'configure-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  for (const end of ['worker', 'publisher']) {
    fs.mkdirSync(path.join(dir, end))
    fs.copyFileSync(path.join(ROOT, end, 'project.config.json'), path.join(dir, end, 'project.config.json'))
  }
  return dir
}
const read = (dir, end) => fs.readFileSync(path.join(dir, end, 'project.config.json'), 'utf8')
const appidOf = (dir, end) => JSON.parse(read(dir, end)).appid

/** The environment without any AppID or config file of the person running the tests. */
function cleanEnv(extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^MARKET__WECHAT__|^MARKET_CONFIG$/.test(k)))
  return Object.assign(env, extra)
}
const run = (args, env) => execFileSync(process.execPath, [SCRIPT, ...args], { env: cleanEnv(env), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

test('configure sets each app its own AppID and changes nothing else in project.config.json', t => {
  const dir = copyOfProjects(t)
  const before = read(dir, 'worker')
  configure({ root: dir, appids: { worker: WORKER, publisher: PUBLISHER } })
  assert.strictEqual(appidOf(dir, 'worker'), WORKER)
  assert.strictEqual(appidOf(dir, 'publisher'), PUBLISHER)
  assert.strictEqual(read(dir, 'worker'), before.replace('"appid": "touristappid"', `"appid": "${WORKER}"`))
  assert.deepStrictEqual(configure({ root: dir, appids: { worker: WORKER, publisher: PUBLISHER }, check: true }), [])
  // not configured (null, the sandbox): back to DevTools' test mode
  configure({ root: dir, appids: { worker: null, publisher: null } })
  assert.strictEqual(appidOf(dir, 'worker'), DEFAULT_APPID)
  assert.strictEqual(read(dir, 'worker'), before)
})

test('configure refuses an AppID that is not one, and one AppID for both apps', t => {
  const dir = copyOfProjects(t)
  assert.throws(() => configure({ root: dir, appids: { worker: 'wx123', publisher: PUBLISHER } }), /not a wx… AppID/)
  assert.throws(() => configure({ root: dir, appids: { worker: WORKER, publisher: WORKER } }), /different AppIDs/)
  assert.strictEqual(appidOf(dir, 'worker'), DEFAULT_APPID)
})

test('npm run configure reads the server configuration: config.yaml (MARKET_CONFIG), then the environment', t => {
  const dir = copyOfProjects(t)
  const yaml = path.join(dir, 'config.yaml')
  fs.writeFileSync(yaml, `wechat:\n  worker:\n    appid: ${WORKER}\n  publisher:\n    appid: ${PUBLISHER}\n`)
  run(['--root', dir], { MARKET_CONFIG: yaml })
  assert.deepStrictEqual([appidOf(dir, 'worker'), appidOf(dir, 'publisher')], [WORKER, PUBLISHER])
  const other = 'wx00000000000000aa'
  run(['--root', dir], { MARKET_CONFIG: yaml, MARKET__WECHAT__PUBLISHER__APPID: other })
  assert.deepStrictEqual([appidOf(dir, 'worker'), appidOf(dir, 'publisher')], [WORKER, other])
  assert.throws(() => run(['--root', dir, '--check'], { MARKET_CONFIG: yaml }), /publisher\/project\.config\.json: appid is wx00000000000000aa, the configuration says wxfedcba9876543210/)
})

test('the committed project files hold touristappid, as the repository config.yaml (no AppID) says', () => {
  for (const end of ['worker', 'publisher']) assert.strictEqual(JSON.parse(fs.readFileSync(path.join(ROOT, end, 'project.config.json'), 'utf8')).appid, DEFAULT_APPID)
  run(['--check'], {}) // exit 0: the files agree with the configuration
})
