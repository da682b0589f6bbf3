#!/usr/bin/env node
// Puts each Mini Program's AppID into its project.config.json, from the server's configuration, so
// the apps and the server name the same two AppIDs (WeChat gives a person a different openid in each):
// `wechat.worker.appid` / `wechat.publisher.appid` of config.yaml (or the file MARKET_CONFIG names),
// overridden by MARKET__WECHAT__WORKER__APPID / MARKET__WECHAT__PUBLISHER__APPID — read by the server's
// own loader (`python -m server appids`), so the precedence is the server's.
// An AppID that is not configured (null, as in the sandbox) is `touristappid`: DevTools' test mode,
// for the simulator. That is what the committed files hold.
//   npm run configure                                        from the configuration
//   npm run configure -- --worker-appid wx… --publisher-appid wx…   these win (no Python needed for both)
//   npm run configure -- --check                             exit 1 when a project.config.json differs
// (docs/miniprogram.md "Open an app in WeChat DevTools" and "Release")
'use strict'
const fs = require('fs')
const path = require('path')
const { execFileSync } = require('child_process')

const ROOT = path.resolve(__dirname, '..')
const REPO = path.resolve(ROOT, '..')
const ENDS = ['worker', 'publisher']
const DEFAULT_APPID = 'touristappid'
const APPID = /^(touristappid|wx[0-9a-f]{16})$/

function python() {
  if (process.env.PYTHON) return process.env.PYTHON
  const venv = path.join(REPO, '.venv/bin/python')
  return fs.existsSync(venv) ? venv : 'python3'
}

/** {worker, publisher}: the server's configured AppIDs (null when not set). */
function configuredAppids(env = process.env) {
  let out
  try {
    out = execFileSync(python(), ['-m', 'server', 'appids'], { cwd: REPO, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const why = (err.stderr || err.message || '').trim()
    throw new Error(`could not read the AppIDs with \`python -m server appids\` (${why}); run \`make install\`, or pass --worker-appid and --publisher-appid`)
  }
  return JSON.parse(out)
}

/** The text of a project.config.json with `appid` set, everything else as it was. */
function withAppid(text, appid) {
  const re = /("appid"\s*:\s*)"[^"]*"/
  if (!re.test(text) || JSON.parse(text).appid === undefined) throw new Error('project.config.json has no "appid"')
  const out = text.replace(re, (_, key) => `${key}${JSON.stringify(appid)}`)
  if (JSON.parse(out).appid !== appid) throw new Error('project.config.json: "appid" is not a top-level key')
  return out
}

/**
 * Write (or with check: compare) each app's project.config.json under `root`.
 * @param {{root?: string, appids: {worker?: string|null, publisher?: string|null}, check?: boolean}} options
 * @returns {string[]} problems (check) or the files changed
 */
function configure({ root = ROOT, appids, check = false }) {
  const out = []
  for (const end of ENDS) {
    const appid = appids[end] || DEFAULT_APPID
    if (!APPID.test(appid)) throw new Error(`the ${end} AppID ${JSON.stringify(appid)} is not a wx… AppID (wx + 16 hex digits)`)
    if (appids.worker && appids.worker === appids.publisher) throw new Error('the worker and the publisher need different AppIDs')
    const file = path.join(root, end, 'project.config.json')
    const text = fs.readFileSync(file, 'utf8')
    const next = withAppid(text, appid)
    if (next === text) continue
    if (check) out.push(`${path.relative(root, file)}: appid is ${JSON.parse(text).appid}, the configuration says ${appid}`)
    else {
      fs.writeFileSync(file, next)
      out.push(`${path.relative(root, file)}: appid ${appid}`)
    }
  }
  return out
}

function arg(name) {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : undefined
}

function main() {
  const given = { worker: arg('--worker-appid'), publisher: arg('--publisher-appid') }
  const appids = given.worker && given.publisher ? given : Object.assign(configuredAppids(), ...ENDS.filter(e => given[e]).map(e => ({ [e]: given[e] })))
  const check = process.argv.includes('--check')
  const lines = configure({ root: arg('--root') ? path.resolve(arg('--root')) : ROOT, appids, check })
  if (check && lines.length) {
    console.error('project.config.json differs from the configured AppIDs; run `npm run configure`:\n  ' + lines.join('\n  '))
    process.exit(1)
  }
  console.log(lines.length ? lines.join('\n') : `AppIDs as configured: worker ${appids.worker || DEFAULT_APPID}, publisher ${appids.publisher || DEFAULT_APPID}`)
}

if (require.main === module) {
  try {
    main()
  } catch (err) {
    console.error(err.message)
    process.exit(1)
  }
}
module.exports = { configure, configuredAppids, withAppid, DEFAULT_APPID }
