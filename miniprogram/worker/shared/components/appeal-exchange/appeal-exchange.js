// The whole exchange of a rejected order, the same on both apps: why it was rejected (the
// acceptance criterion, or 其他 with the reason), the worker's appeal (reason, evidence), the
// publisher's answer (text, image) or the time it is due by, and the operator's or the rule's
// decision. `viewer` says whose phone it is ("我的申诉" / "接单方的申诉").

const { appealExchange } = require('../../views')

Component({
  options: { styleIsolation: 'apply-shared' },
  properties: {
    order: { type: Object, value: null },
    viewer: { type: String, value: 'worker' },
  },
  data: { x: /** @type {any} */ (null) },
  observers: {
    'order, viewer'(order, viewer) {
      this.setData({ x: order && order.id ? appealExchange(order, viewer) : null })
    },
  },
  methods: {
    onExpire() {
      this.triggerEvent('expire', {})
    },
  },
})
