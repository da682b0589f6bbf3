'use strict'
// Each app folder must open and run in WeChat DevTools as it is: valid project files, every page
// and component present, every require() resolving inside the app folder (DevTools sees nothing
// outside it, and follows no symlink).
const test = require('node:test')
const assert = require('node:assert')
const fs = require('fs')
const path = require('path')

const ROOT = path.resolve(__dirname, '../..')

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
}

for (const end of ['worker', 'publisher']) {
  const appRoot = path.join(ROOT, end)
  const json = p => JSON.parse(fs.readFileSync(path.join(appRoot, p), 'utf8'))

  test(`${end}: project.config.json, app.json and sitemap are valid and every page exists`, () => {
    const project = json('project.config.json')
    assert.strictEqual(project.compileType, 'miniprogram')
    assert.match(project.appid, /^(touristappid|wx[0-9a-f]{16})$/)
    assert.ok(project.libVersion >= '3.3.0', 'wx.requestMerchantTransfer needs base library 3.3.0')
    const app = json('app.json')
    assert.strictEqual(app.pages[0], 'pages/index/index', 'the share path and the Mini Program code open pages/index/index')
    for (const page of app.pages) {
      for (const ext of ['js', 'json', 'wxml', 'wxss']) assert.ok(fs.existsSync(path.join(appRoot, `${page}.${ext}`)), `${page}.${ext}`)
    }
    for (const tab of app.tabBar.list) assert.ok(app.pages.includes(tab.pagePath), tab.pagePath)
    assert.ok(fs.existsSync(path.join(appRoot, app.sitemapLocation)))
    for (const f of ['app.js', 'app.wxss', 'env.js']) assert.ok(fs.existsSync(path.join(appRoot, f)), f)
  })

  test(`${end}: every component a page or component uses exists, and every require() stays inside the app`, () => {
    const files = walk(appRoot)
    for (const file of files.filter(f => f.endsWith('.json') && fs.existsSync(f.replace(/\.json$/, '.wxml')))) {
      const usingComponents = JSON.parse(fs.readFileSync(file, 'utf8')).usingComponents || {}
      for (const [tag, target] of Object.entries(usingComponents)) {
        const base = target.startsWith('/') ? path.join(appRoot, target) : path.resolve(path.dirname(file), target)
        assert.ok(base.startsWith(appRoot + path.sep), `${file}: ${tag} points outside the app`)
        for (const ext of ['js', 'json', 'wxml']) assert.ok(fs.existsSync(`${base}.${ext}`), `${path.relative(ROOT, file)}: <${tag}> → ${target}.${ext}`)
        assert.strictEqual(JSON.parse(fs.readFileSync(`${base}.json`, 'utf8')).component, true, `${target} is a component`)
      }
    }
    for (const file of files.filter(f => f.endsWith('.js'))) {
      const source = fs.readFileSync(file, 'utf8')
      for (const m of source.matchAll(/require\(\s*['"]([^'"]+)['"]\s*\)/g)) {
        assert.ok(m[1].startsWith('.'), `${path.relative(ROOT, file)}: require('${m[1]}') is not a relative path (no npm packages at run time)`)
        const target = path.resolve(path.dirname(file), m[1])
        assert.ok(target.startsWith(appRoot + path.sep), `${path.relative(ROOT, file)}: require('${m[1]}') leaves the app folder`)
        assert.ok(fs.existsSync(target.endsWith('.js') ? target : `${target}.js`), `${path.relative(ROOT, file)}: require('${m[1]}') is missing`)
      }
    }
  })

  test(`${end}: no symlink anywhere in the app folder`, () => {
    const links = []
    const visit = dir => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name)
        if (e.isSymbolicLink()) links.push(p)
        else if (e.isDirectory()) visit(p)
      }
    }
    visit(appRoot)
    assert.deepStrictEqual(links, [])
  })
}

test('every page a subscription message opens (config.yaml) and the invitation page exist in the right app', () => {
  const lines = fs.readFileSync(path.join(ROOT, '..', 'config.yaml'), 'utf8').split('\n')
  const start = lines.findIndex(l => /^\s*subscription_templates:/.test(l))
  assert.ok(start > 0)
  let end = null
  const pages = []
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line) || /^ {2}\S/.test(line)) break // the section ended
    const section = /^ {4}(worker|publisher):/.exec(line)
    if (section) end = section[1]
    const page = /^\s+page:\s*"([^"?]+)/.exec(line)
    if (page && end) pages.push([end, page[1]])
  }
  assert.ok(pages.length >= 10, JSON.stringify(pages))
  for (const [end, page] of pages.concat([['worker', 'pages/index/index'], ['publisher', 'pages/index/index']])) {
    const app = JSON.parse(fs.readFileSync(path.join(ROOT, end, 'app.json'), 'utf8'))
    assert.ok(app.pages.includes(page), `${end} has no ${page}`)
  }
})
