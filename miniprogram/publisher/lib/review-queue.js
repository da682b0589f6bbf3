// What waits for me across my tasks: orders to review (soonest deadline first) and appeals I have
// not answered yet (the one with an answer deadline first). The API has no list of them: a task's
// funnel counts its orders awaiting review and appealing, and the task's detail carries them.
// Only my 50 most recent tasks are looked at (a review window is minutes long, an appeal window
// not much longer: older tasks have nothing left to do).

const at = iso => (iso ? Date.parse(iso) : Infinity)

/**
 * @param {import('../../types/client').Api} api
 * @param {{appeals?: boolean}} [options] appeals: also the appeals waiting for my answer
 * @returns {Promise<{review: Array<import('../../types/models').Order>, appeals: Array<import('../../types/models').Order>}>}
 */
async function loadWork(api, options = {}) {
  const page = await api.get('/tasks', { limit: 50 })
  const withWork = page.items.filter(t => t.funnel && (t.funnel.awaiting_review > 0 || (options.appeals && t.funnel.appealing > 0)))
  const details = await Promise.all(withWork.map(t => api.get(`/tasks/${t.id}`)))
  const review = []
  const appeals = []
  details.forEach(d => {
    d.orders.forEach(o => {
      if (o.status === 'awaiting_review') review.push(Object.assign({}, o, { task: d.task }))
      else if (options.appeals && o.status === 'appealing' && !o.answered_at) appeals.push(Object.assign({}, o, { task: d.task }))
    })
  })
  review.sort((a, b) => Date.parse(a.deadline_at || a.review_deadline_at) - Date.parse(b.deadline_at || b.review_deadline_at))
  appeals.sort((a, b) => at(a.answer_due_at) - at(b.answer_due_at) || at(a.appealed_at) - at(b.appealed_at))
  return { review, appeals }
}

/** @returns {Promise<Array<import('../../types/models').Order>>} */
async function loadReviewQueue(api) {
  return (await loadWork(api)).review
}

module.exports = { loadReviewQueue, loadWork }
