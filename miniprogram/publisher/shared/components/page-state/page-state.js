// Loading, error (with a retry button) and empty states of a screen; shows nothing when ready.
Component({
  options: { multipleSlots: true },
  properties: {
    state: { type: String, value: 'loading' }, // loading | error | empty | ready
    errorText: { type: String, value: '' },
    emptyText: { type: String, value: '暂无内容' },
  },
  methods: {
    retry() {
      this.triggerEvent('retry', {})
    },
  },
})
