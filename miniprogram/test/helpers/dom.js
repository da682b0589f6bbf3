// miniprogram-simulate renders into a DOM: give node:test jsdom's window and its Event classes
// (without them taps fail with "parameter 1 is not of type 'Event'"). Load this before simulate.
'use strict'
const { JSDOM } = require('jsdom')

if (!global.window) {
  const dom = new JSDOM('<!doctype html><html><head></head><body></body></html>', { pretendToBeVisual: true })
  global.window = dom.window
  for (const name of ['document', 'Event', 'CustomEvent', 'Node', 'Element', 'HTMLElement', 'MutationObserver', 'getComputedStyle', 'requestAnimationFrame', 'cancelAnimationFrame']) {
    // Node has its own Event and EventTarget; simulate needs jsdom's.
    global[name] = dom.window[name]
  }
}

module.exports = { simulate: require('miniprogram-simulate') }
