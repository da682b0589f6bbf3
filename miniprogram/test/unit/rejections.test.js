'use strict'
// The rejection rule the publisher's form checks before sending: the server's own rule
// (models/orders.py reject), case by case, and the body it sends.
const test = require('node:test')
const assert = require('node:assert')
const { rejectProblem, rejectBody, rejectionLines, readableNote, textLength } = require('../../shared/views')

const C = ['截图须含公众号名称', '须关注满24小时']

test('a task with criteria: a criterion (reason optional), or 其他 with at least 10 characters', () => {
  assert.strictEqual(rejectProblem(C, null, ''), '请选择凭证未达到的验收标准，或选择“其他”并说明原因')
  assert.strictEqual(rejectProblem(C, null, '九个字九个字九个字'), '请选择凭证未达到的验收标准，或选择“其他”并说明原因')
  assert.strictEqual(rejectProblem(C, null, '理由写得很长很长很长很长'), '', 'nothing chosen with 10 characters is "other", as on the server')
  assert.strictEqual(rejectProblem(C, 0, ''), '')
  assert.strictEqual(rejectProblem(C, 1, '补充'), '')
  assert.strictEqual(rejectProblem(C, 2, ''), '请选择任务的一条验收标准')
  assert.strictEqual(rejectProblem(C, 'other', '九个字九个字九个字'), '选择“其他”时，请用至少 10 个字说明原因')
  assert.strictEqual(rejectProblem(C, 'other', '  十个字十个字十个字十  '), '', 'trimmed first, as the server does')
  assert.strictEqual(rejectProblem(C, 'other', '👍'.repeat(9)), '选择“其他”时，请用至少 10 个字说明原因')
  assert.strictEqual(rejectProblem(C, 'other', '👍'.repeat(10)), '')
  assert.strictEqual(rejectProblem(C, 0, '长'.repeat(501)), '驳回原因最多 500 个字')
})

test('a task without criteria: a reason of any length', () => {
  assert.strictEqual(rejectProblem(null, null, ''), '请填写驳回原因')
  assert.strictEqual(rejectProblem([], null, '   '), '请填写驳回原因')
  assert.strictEqual(rejectProblem(null, null, '没关注'), '')
})

test('the body names the criterion by index and sends a trimmed reason only when there is one', () => {
  assert.deepStrictEqual(rejectBody(C, 1, ''), { criterion: 1 })
  assert.deepStrictEqual(rejectBody(C, 0, ' 看不到 '), { criterion: 0, reason: '看不到' })
  assert.deepStrictEqual(rejectBody(C, 'other', '截图是别人的账号，不是本人'), { reason: '截图是别人的账号，不是本人' })
  assert.deepStrictEqual(rejectBody(C, null, '截图是别人的账号，不是本人'), { reason: '截图是别人的账号，不是本人' })
  assert.deepStrictEqual(rejectBody(null, null, '没关注'), { reason: '没关注' })
})

test('why an order was rejected, as both apps show it', () => {
  const task = { criteria: C }
  assert.deepStrictEqual(rejectionLines({ reject_criterion: C[0], reject_reason: C[0], task }), { kind: '未达到验收标准', text: C[0], detail: '' })
  assert.deepStrictEqual(rejectionLines({ reject_criterion: C[0], reject_reason: '看不到', task }), { kind: '未达到验收标准', text: C[0], detail: '看不到' })
  assert.deepStrictEqual(rejectionLines({ reject_criterion: null, reject_reason: '截图是别人的账号', task }), { kind: '其他', text: '截图是别人的账号', detail: '' })
  assert.deepStrictEqual(rejectionLines({ reject_criterion: null, reject_reason: '没关注', task: { criteria: null } }), { kind: '原因', text: '没关注', detail: '' })
  assert.strictEqual(rejectionLines({ reject_criterion: null, reject_reason: null }), null)
  assert.strictEqual(textLength('a👍b'), 3)
  assert.strictEqual(readableNote('自动规则：发单方未在期限内回应申诉（publisher_loss_rate）'), '自动规则：发单方未在期限内回应申诉')
  assert.strictEqual(readableNote('凭证不符（见截图）'), '凭证不符（见截图）')
})
