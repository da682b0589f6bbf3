// Lists of pages of things, newest first (tasks, orders, postings, withdrawals): the first page on
// load and pull-to-refresh, the next one (by `next_cursor`) when the person reaches the bottom.
// The page keeps `state`, `errorText`, `nextCursor`, `loadingMore` and its items under `spec.key`.

const { errorText } = require('./errors')
const { toast, ctx } = require('./ui')

/**
 * `path`: a documented GET of this app that answers a page (types/client.d.ts PagedPath).
 * @typedef {{path: import('../../types/client').PagedPath, key: string, toItem: (x: any) => any, query?: (page: any) => object, limit?: number}} ListSpec
 */

/** Load the first page again. @param {any} page @param {ListSpec} spec */
async function reloadList(page, spec) {
  if (!page.data[spec.key].length) page.setData({ state: 'loading' })
  try {
    await ctx().ready()
    const result = await ctx().api.get(spec.path, Object.assign({ limit: spec.limit || 20 }, spec.query ? spec.query(page) : {}))
    page.setData({ [spec.key]: result.items.map(spec.toItem), nextCursor: result.next_cursor, state: result.items.length ? 'ready' : 'empty' })
  } catch (err) {
    page.setData({ state: 'error', errorText: errorText(err) })
  }
}

/** Append the next page, if there is one (items already shown are not repeated). @param {any} page @param {ListSpec} spec */
async function moreList(page, spec) {
  if (!page.data.nextCursor || page.data.loadingMore) return
  page.setData({ loadingMore: true })
  try {
    const query = Object.assign({ limit: spec.limit || 20, cursor: page.data.nextCursor }, spec.query ? spec.query(page) : {})
    const result = await ctx().api.get(spec.path, query)
    const known = new Set(page.data[spec.key].map(x => x.id))
    const fresh = result.items.map(spec.toItem).filter(x => !known.has(x.id))
    page.setData({ [spec.key]: page.data[spec.key].concat(fresh), nextCursor: result.next_cursor })
  } catch (err) {
    toast(errorText(err))
  } finally {
    page.setData({ loadingMore: false })
  }
}

module.exports = { reloadList, moreList }
