// Where this app finds the server, per environment (docs/miniprogram.md). The environment is the
// version WeChat runs: develop (DevTools and preview), trial (体验版), release (正式版). Phones reach
// only https/wss on domains registered in the Mini Program console; http://127.0.0.1 works in
// DevTools with "不校验合法域名" checked.
const ENVIRONMENTS = {
  develop: { baseUrl: 'http://127.0.0.1:8000' },
  trial: { baseUrl: 'https://staging.market.example.com' },
  release: { baseUrl: 'https://market.example.com' },
}

function current() {
  let version = 'develop'
  try {
    version = wx.getAccountInfoSync().miniProgram.envVersion || 'develop'
  } catch (e) {
    /* older base libraries: develop */
  }
  return ENVIRONMENTS[version] || ENVIRONMENTS.develop
}

module.exports = { ENVIRONMENTS, current }
