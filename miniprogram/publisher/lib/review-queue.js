// What waits for me across all my tasks: orders to review (soonest review deadline first) and
// appeals I have not answered yet (the one with an answer deadline first). The server lists them
// across every task, however old or crowded (GET /publisher/orders?need=review|answer); a queue
// longer than MAX_PAGES pages shows its soonest part first and says there is more.

const PAGE = 50
const MAX_PAGES = 10

const at = iso => (iso ? Date.parse(iso) : Infinity)

/**
 * @param {import('../../types/client').Api} api
 * @param {'review' | 'answer'} need
 * @returns {Promise<{items: Array<import('../../types/models').PublisherOrder>, more: boolean}>}
 */
async function loadAll(api, need) {
  const items = []
  let cursor = null
  for (let n = 0; n < MAX_PAGES; n++) {
    const query = cursor ? { need, limit: PAGE, cursor } : { need, limit: PAGE }
    const page = await api.get('/orders', query)
    items.push(...page.items)
    cursor = page.next_cursor
    if (!cursor) return { items, more: false }
  }
  return { items, more: true }
}

/**
 * @param {import('../../types/client').Api} api
 * @param {{appeals?: boolean}} [options] appeals: also the appeals waiting for my answer
 * @returns {Promise<{review: Array<import('../../types/models').PublisherOrder>, appeals: Array<import('../../types/models').PublisherOrder>, more: boolean}>}
 */
async function loadWork(api, options = {}) {
  const [review, appeals] = await Promise.all([
    loadAll(api, 'review'),
    options.appeals ? loadAll(api, 'answer') : Promise.resolve({ items: [], more: false }),
  ])
  // The server's order for reviews; appeals with an answer deadline first, then the oldest.
  const answer = appeals.items.slice().sort((a, b) => at(a.answer_due_at) - at(b.answer_due_at) || at(a.appealed_at) - at(b.appealed_at))
  return { review: review.items, appeals: answer, more: review.more || appeals.more }
}

module.exports = { loadWork }
