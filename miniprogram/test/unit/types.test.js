'use strict'
// types/models.d.ts names schemas of docs/openapi.json; tsc runs with skipLibCheck, so a name that is
// not there (a renamed schema) would silently make that type `any`. Every name must exist.
const test = require('node:test')
const assert = require('node:assert')
const fs = require('fs')
const path = require('path')

test('every schema types/models.d.ts names is in docs/openapi.json', () => {
  const models = fs.readFileSync(path.join(__dirname, '../../types/models.d.ts'), 'utf8')
  const schemas = JSON.parse(fs.readFileSync(path.join(__dirname, '../../../docs/openapi.json'), 'utf8')).components.schemas
  const named = [...models.matchAll(/S\['(\w+)'\]/g)].map(m => m[1])
  assert.ok(named.length > 10)
  assert.deepStrictEqual(named.filter(n => !(n in schemas)), [])
})

// "tsc fails when the server and the apps disagree": rename fields the apps read or send (and one
// path they call) in a copy of docs/openapi.json, generate its types as `npm run types` does, and
// type-check both apps against them. Every rename must fail in the app that uses it; the real
// document must pass the same way. (The apps' calls are typed per path: types/client.d.ts.)
const ROOT = path.join(__dirname, '../..')
const DOC = path.join(ROOT, '../docs/openapi.json')

/** Rename one property of a schema in place (same position, `required` too). */
function renameField(doc, schema, field) {
  const s = doc.components.schemas[schema]
  assert.ok(s && s.properties && field in s.properties, `${schema}.${field} is in docs/openapi.json`)
  s.properties = Object.fromEntries(Object.entries(s.properties).map(([k, v]) => [k === field ? `${field}_renamed` : k, v]))
  if (s.required) s.required = s.required.map(k => (k === field ? `${field}_renamed` : k))
}

/**
 * Type-check both apps (their JS, types/*.d.ts) once per text of types/api.d.ts in `versions`:
 * [{worker: [...], publisher: [...]}] diagnostics, each "file(line): message | source line".
 * One copy of the apps; later programs reuse the unchanged files (lib, WeChat's typings) of earlier ones.
 */
function typecheck(versions) {
  const ts = require('typescript')
  const dir = fs.mkdtempSync(path.join(ROOT, '.test-tmp-types-')) // inside miniprogram/: node_modules is found
  try {
    for (const name of ['worker', 'publisher', 'types']) {
      fs.cpSync(path.join(ROOT, name), path.join(dir, name), { recursive: true, filter: src => fs.statSync(src).isDirectory() || /\.(js|d\.ts)$/.test(src) })
    }
    for (const name of fs.readdirSync(ROOT).filter(n => /^tsconfig.*\.json$/.test(n))) fs.copyFileSync(path.join(ROOT, name), path.join(dir, name))
    const old = {}
    return versions.map(apiTypes => {
      fs.writeFileSync(path.join(dir, 'types/api.d.ts'), apiTypes)
      const out = {}
      for (const app of ['worker', 'publisher']) {
        const file = path.join(dir, `tsconfig.${app}.json`)
        const config = ts.getParsedCommandLineOfConfigFile(file, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: d => assert.fail(ts.flattenDiagnosticMessageText(d.messageText, '\n')) })
        const program = ts.createProgram({ rootNames: config.fileNames, options: config.options, oldProgram: old[app] })
        old[app] = program
        out[app] = ts.getPreEmitDiagnostics(program).map(d => {
          if (!d.file) return ts.flattenDiagnosticMessageText(d.messageText, ' ')
          const { line } = d.file.getLineAndCharacterOfPosition(d.start)
          return `${path.relative(dir, d.file.fileName)}(${line + 1}): ${ts.flattenDiagnosticMessageText(d.messageText, ' ')} | ${d.file.text.split('\n')[line].trim()}`
        })
      }
      return out
    })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

test('tsc fails when docs/openapi.json renames what the apps read or send, and passes on the real document', async () => {
  const { generate } = require('../../scripts/gen-api-types')
  const real = JSON.parse(fs.readFileSync(DOC, 'utf8'))

  // [schema, field, the apps whose tsc must fail (a message or source line naming `word`, else the field)]
  const renames = [
    ['LoginOut', 'refresh_token', ['worker', 'publisher']], // shared/api.js keeps it after POST /login
    ['TokensOut', 'token', ['worker', 'publisher']], // ... and after POST /refresh
    ['CreatedRechargeOut', 'payment', ['publisher']], // recharge: wx.requestPayment's parameters
    ['PublishedTaskOut', 'id', ['publisher']], // publish: opens the new task
    ['PublishIn', 'unit_price_fen', ['publisher']], // publish: the body sent
    ['SubmitIn', 'proof_text', ['worker']], // submit: the body sent
    ['HallTaskPage', 'next_cursor', ['worker'], "'/hall'"], // the hall is no longer a page (shared/list.js)
    ['WalletOut', 'available_fen', ['worker', 'publisher']],
    ['UserOut', 'invite_code', ['worker', 'publisher']], // profile (GET /me)
  ]
  const doc = JSON.parse(JSON.stringify(real))
  for (const [schema, field] of renames) renameField(doc, schema, field)
  // and a path: take is now /grab
  doc.paths['/api/v1/worker/tasks/{task_id}/grab'] = doc.paths['/api/v1/worker/tasks/{task_id}/take']
  delete doc.paths['/api/v1/worker/tasks/{task_id}/take']
  const [passing, failing] = typecheck([await generate(real), await generate(doc)])
  assert.deepStrictEqual(passing, { worker: [], publisher: [] })

  const caught = (app, word) => failing[app].some(m => m.includes(word))
  for (const [schema, field, apps, word] of renames) {
    for (const app of apps) assert.ok(caught(app, word || field), `renaming ${schema}.${field} fails the ${app} app's tsc:\n${failing[app].join('\n')}`)
  }
  assert.ok(caught('worker', '/take'), `the worker's take of an undocumented path fails tsc:\n${failing.worker.join('\n')}`)
})
