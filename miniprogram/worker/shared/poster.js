// The invitation poster: a 2D offscreen canvas with a title, the invite code and the Mini Program
// code (an image downloaded from the server), exported to a temporary PNG the person can save.

const WIDTH = 600
const HEIGHT = 860

function loadImage(canvas, src) {
  return new Promise((resolve, reject) => {
    const img = canvas.createImage()
    img.onload = () => resolve(img)
    img.onerror = reject
    img.src = src
  })
}

/**
 * @param {{codePath: string, inviteCode: string, title: string, subtitle: string}} options
 * @returns {Promise<string>} the poster's temporary file path
 */
async function drawPoster(options) {
  const canvas = wx.createOffscreenCanvas({ type: '2d', width: WIDTH, height: HEIGHT })
  const c = canvas.getContext('2d')
  c.fillStyle = '#0052d9'
  c.fillRect(0, 0, WIDTH, HEIGHT)
  c.fillStyle = '#ffffff'
  c.fillRect(40, 200, WIDTH - 80, HEIGHT - 260)
  c.fillStyle = '#ffffff'
  c.font = 'bold 44px sans-serif'
  c.textAlign = 'center'
  c.fillText(options.title, WIDTH / 2, 110)
  c.font = '28px sans-serif'
  c.fillText(options.subtitle, WIDTH / 2, 160)
  const code = await loadImage(canvas, options.codePath)
  c.drawImage(code, (WIDTH - 400) / 2, 240, 400, 400)
  c.fillStyle = '#1f2329'
  c.font = '30px sans-serif'
  c.fillText(`邀请码 ${options.inviteCode}`, WIDTH / 2, 700)
  c.fillStyle = '#888888'
  c.font = '24px sans-serif'
  c.fillText('长按识别小程序码', WIDTH / 2, 750)
  return new Promise((resolve, reject) => {
    wx.canvasToTempFilePath({ canvas, fileType: 'png', success: res => resolve(res.tempFilePath), fail: reject })
  })
}

module.exports = { drawPoster, WIDTH, HEIGHT }
