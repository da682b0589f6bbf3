// Invitations (both apps): my code, a share card that carries it as the `scene`, a poster with
// the Mini Program code, and every invitee with what they earned me.

const { ctx, toast, listen, debounce, pageLifetimes, errorText } = require('../../shared/ui')
const { yuanText, percentText } = require('../../shared/money')
const { beijing } = require('../../shared/time')
const { drawPoster } = require('../../shared/poster')

const sharePaths = new WeakMap()

function ruleText(end, config) {
  if (!config) return '好友通过你的分享首次登录即成为你的邀请对象'
  return end === 'worker'
    ? `好友每完成一单，你获得单价的 ${percentText(config.worker_invite_bp)}`
    : `好友每完成一单，你获得发布服务费的 ${percentText(config.publisher_invite_bp)}`
}

Component({
  data: { state: 'loading', errorText: '', inviteCode: '', earnedText: '', inviteesCount: 0, invitees: /** @type {any[]} */ ([]), ruleText: '', posterShown: false, posterSrc: '', posterError: '' },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      listen(this, ['wallet.changed', 'reconnected'], () => debounce(this, 'load', 300, () => this.load()))
      this.load()
    },
    onPullDownRefresh() {
      this.load().then(() => wx.stopPullDownRefresh())
    },
    async load() {
      try {
        await ctx().ready()
        const [inv, config] = await Promise.all([ctx().api.get('/invitations'), ctx().loadConfig().catch(() => null)])
        /** @type {import('../../../types/models').Invitations} */
        const invitations = inv
        sharePaths.set(this, invitations.share_path)
        this.setData({
          state: 'ready',
          inviteCode: inv.invite_code,
          earnedText: yuanText(inv.referral_earned_fen),
          inviteesCount: inv.invitees_count,
          ruleText: ruleText(ctx().end, config),
          invitees: inv.invitees.map(i => ({ id: i.id, nickname: i.nickname || '微信用户', joinedText: beijing(i.joined_at), earnedText: yuanText(i.earned_fen) })),
        })
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    copyCode() {
      wx.setClipboardData({ data: this.data.inviteCode, success: () => toast('邀请码已复制') })
    },
    async showPoster() {
      this.setData({ posterShown: true, posterError: '' })
      let code
      try {
        code = await ctx().api.download('/invitations/qrcode')
      } catch (err) {
        this.setData({ posterError: errorText(err) })
        return
      }
      try {
        const worker = ctx().end === 'worker'
        const poster = await drawPoster({
          codePath: code,
          inviteCode: this.data.inviteCode,
          title: worker ? '一起做任务赚佣金' : '一起发布任务',
          subtitle: worker ? '微信扫码，领任务、赚佣金' : '微信扫码，快速找到接单的人',
        })
        this.setData({ posterSrc: poster })
      } catch (err) {
        this.setData({ posterSrc: code }) // no canvas (old base library): the Mini Program code alone
      }
    },
    savePoster() {
      wx.saveImageToPhotosAlbum({
        filePath: this.data.posterSrc,
        success: () => toast('已保存到相册'),
        fail: () => toast('保存失败，请允许访问相册后重试'),
      })
    },
    /** The share card opens the app's first page with my code as the scene: it binds at first login. */
    onShareAppMessage() {
      const path = sharePaths.get(this) || `pages/index/index?scene=${this.data.inviteCode}`
      return { title: ctx().end === 'worker' ? '一起来做任务赚佣金' : '一起来发布任务', path: `/${path}` }
    },
  },
})
