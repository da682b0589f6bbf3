// wx.requestMerchantTransfer: the user confirms receiving a payout (WeChat's merchant transfer,
// base library ≥ 3.3.0). The server's withdrawal view carries the arguments in `transfer`.

const { toast } = require('./ui')

function confirmTransfer(withdrawal) {
  const t = withdrawal.transfer
  return new Promise(resolve => {
    if (typeof wx.requestMerchantTransfer !== 'function') {
      toast('微信版本过低，请升级后在提现记录中确认收款')
      resolve(false)
      return
    }
    wx.requestMerchantTransfer({
      mchId: t.mchId,
      appId: t.appId,
      package: t.package,
      openId: t.openId,
      success: () => {
        toast('已确认收款，等待到账')
        resolve(true)
      },
      fail: () => {
        toast('未确认收款，可在提现记录中再次确认')
        resolve(false)
      },
    })
  })
}

module.exports = { confirmTransfer }
