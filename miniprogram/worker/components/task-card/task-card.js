// One task in the hall: title, price in yuan, slots left and the take countdown.
Component({
  properties: {
    task: { type: Object, value: {} }, // a view from shared/views.js taskCard()
  },
})
