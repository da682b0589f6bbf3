// What a banned user sees instead of the app: that the account is banned and why (when the
// server gives a reason), and a way to try again after the ban is lifted.

const { ctx, toast, showError } = require('../../shared/ui')

Component({
  data: { reasonText: '' },
  methods: {
    onLoad() {
      const err = ctx().banned
      const reason = err && err.details && err.details.reason
      this.setData({ reasonText: reason ? `原因：${reason}` : '原因：违反平台规则' })
    },
    async retry() {
      try {
        ctx().api.setToken('')
        await ctx().api.login()
        ctx().clearBanned()
        ctx().live.start()
        wx.reLaunch({ url: '/pages/index/index' })
      } catch (err) {
        if (err && err.code === 'user_banned') toast('账号仍处于封禁状态')
        else showError(err)
      }
    },
  },
})
