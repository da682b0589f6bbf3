// A strip shown while the live connection is down ("weak network"): what is on screen may be old.
const liveStatusOffs = new WeakMap()

Component({
  data: { offline: false },
  lifetimes: {
    attached() {
      const live = getApp().ctx.live
      const show = state => this.setData({ offline: state === 'reconnecting' || (state === 'connecting' && live.everConnected) })
      show(live.state)
      liveStatusOffs.set(this, live.on('state', show))
    },
    detached() {
      const off = liveStatusOffs.get(this)
      if (off) off()
      liveStatusOffs.delete(this)
    },
  },
})
