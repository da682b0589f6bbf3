#!/usr/bin/env node
// Compiles every .wxml of each app with WeChat's own template compiler (wcc), and every .wxss with
// its style compiler (wcsc) — both shipped in miniprogram-simulate's dependency
// miniprogram-compiler: a syntax error fails with its file, line and column, as DevTools shows it.
'use strict'
const fs = require('fs')
const path = require('path')
const compiler = require('miniprogram-compiler')
const wcsc = require('miniprogram-compiler/src/wcsc') // returns (not throws) its error

function wxssFiles(dir, root = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : wxssFiles(p, root)
    return e.name.endsWith('.wxss') ? [path.relative(root, p).slice(0, -'.wxss'.length)] : []
  })
}

let failed = false
for (const app of ['worker', 'publisher']) {
  const root = path.resolve(__dirname, '..', app)
  try {
    compiler.wxmlToJs(root, { maxBuffer: 64 * 1024 * 1024 })
    const styles = wcsc(root, wxssFiles(root), { maxBuffer: 64 * 1024 * 1024 })
    if (styles instanceof Error) throw styles
    console.log(`wcc: ${app} templates and styles compiled`)
  } catch (err) {
    failed = true
    console.error(`wcc: ${app}: ${err.message}`)
  }
}
process.exit(failed ? 1 : 0)
