#!/usr/bin/env node
// Copies miniprogram/shared into each app: WeChat DevTools does not follow symlinks, so each app
// folder must hold real files to open and run on its own.
//   shared/<modules, components>  -> <app>/shared/...
//   shared/pages/<screen>/        -> <app>/pages/<screen>/   (screens both apps have: wallet, ledger, ...)
// The copies are committed so a fresh clone opens in DevTools as it is; `--check` (run by `npm test`)
// fails when a copy differs from its source, so nobody edits a copy by mistake.
'use strict'
const fs = require('fs')
const path = require('path')

const ROOT = path.resolve(__dirname, '..')
const SOURCE = path.join(ROOT, 'shared')
const APPS = ['worker', 'publisher']

function walk(dir) {
  const out = []
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) out.push(...walk(full))
    else out.push(full)
  }
  return out.sort()
}

/** [source file, destination file] for one app. */
function plan(app) {
  const appRoot = path.join(ROOT, app)
  return walk(SOURCE).map(file => {
    const rel = path.relative(SOURCE, file)
    const parts = rel.split(path.sep)
    const dest = parts[0] === 'pages' ? path.join(appRoot, ...parts) : path.join(appRoot, 'shared', rel)
    return [file, dest]
  })
}

/** Files in <app>/shared that no longer have a source (deleted or renamed there). */
function strays(app, wanted) {
  const dir = path.join(ROOT, app, 'shared')
  if (!fs.existsSync(dir)) return []
  return walk(dir).filter(file => !wanted.has(file))
}

function main() {
  const check = process.argv.includes('--check')
  const problems = []
  for (const app of APPS) {
    const pairs = plan(app)
    const wanted = new Set(pairs.map(([, dest]) => dest))
    for (const [src, dest] of pairs) {
      const data = fs.readFileSync(src)
      const same = fs.existsSync(dest) && fs.readFileSync(dest).equals(data)
      if (same) continue
      if (check) problems.push(`${path.relative(ROOT, dest)} differs from ${path.relative(ROOT, src)}`)
      else {
        fs.mkdirSync(path.dirname(dest), { recursive: true })
        fs.writeFileSync(dest, data)
      }
    }
    for (const stray of strays(app, wanted)) {
      if (check) problems.push(`${path.relative(ROOT, stray)} has no source in shared/`)
      else fs.rmSync(stray)
    }
  }
  if (problems.length) {
    console.error('Shared copies are out of date; run `npm run sync` in miniprogram/:\n  ' + problems.join('\n  '))
    process.exit(1)
  }
}

if (require.main === module) main()
module.exports = { plan }
