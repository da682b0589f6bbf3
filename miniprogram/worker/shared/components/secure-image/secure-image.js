// An uploaded image (proof, evidence, attachment). The server's files need the session token,
// which <image> cannot send: it shows the signed URL when the view has one, else the file
// downloaded with the token. A long press scans a QR code in it; a tap opens the full-screen preview.
Component({
  properties: {
    imageRef: { type: String, value: '' },
    url: { type: String, value: '' }, // signed URL from the view, when the server gives one
    mode: { type: String, value: 'widthFix' },
  },
  data: { src: '', failed: false },
  observers: {
    'imageRef, url'() {
      this.load()
    },
  },
  methods: {
    load() {
      const { imageRef, url } = this.properties
      if (!imageRef && !url) {
        this.setData({ src: '', failed: false })
        return
      }
      this.setData({ failed: false })
      getApp()
        .ctx.api.imageSrc(imageRef, url)
        .then(src => this.setData({ src }))
        .catch(() => this.setData({ failed: true, src: '' }))
    },
    /** The signed URL expired while the page stayed open: fetch the image with the token instead. */
    onError() {
      const { imageRef } = this.properties
      if (!imageRef || this.data.src.indexOf('http') !== 0) {
        this.setData({ src: '', failed: true })
        return
      }
      getApp()
        .ctx.api.imageSrc(imageRef, '')
        .then(src => this.setData({ src }))
        .catch(() => this.setData({ failed: true, src: '' }))
    },
    preview() {
      if (this.data.src) wx.previewImage({ urls: [this.data.src], current: this.data.src, showmenu: true })
    },
  },
})
