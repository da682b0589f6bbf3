// Profile (both apps): WeChat no longer hands out nicknames or avatars, so the person types a
// nickname (<input type="nickname"> offers the WeChat one) and picks an avatar (chooseAvatar);
// both are saved on the server. Links to the other screens of "我的". A worker also sees their own
// record as publishers see it, and an automatic limit on their takes (GET /worker/record).

const { ctx, toast, showError, confirm, pageLifetimes, navigate, dataset, errorText } = require('../../shared/ui')
const { workerRecordLines } = require('../../shared/views')

Component({
  data: { state: 'loading', errorText: '', end: '', userId: 0, nickname: '', savedNickname: '', inviteCode: '', avatarSrc: '', uploading: false, progress: 0, recordLines: /** @type {any[]} */ ([]) },
  lifetimes: pageLifetimes,
  methods: {
    onLoad() {
      this.setData({ end: ctx().end })
      this.load()
    },
    async load() {
      try {
        await ctx().ready()
        const me = await ctx().api.get('/me')
        this.setData({ state: 'ready', userId: me.id, nickname: me.nickname || '', savedNickname: me.nickname || '', inviteCode: me.invite_code })
        if (me.avatar_url || me.avatar) {
          ctx()
            .api.imageSrc(me.avatar, me.avatar_url)
            .then(src => this.setData({ avatarSrc: src }))
            .catch(() => {})
        }
        if (ctx().end === 'worker') this.loadRecord()
      } catch (err) {
        this.setData({ state: 'error', errorText: errorText(err) })
      }
    },
    /** My record, beside the profile: a failure leaves it out (the profile still works). */
    async loadRecord() {
      try {
        const r = await ctx().api.get('/api/v1/worker/record') // the worker's (this page is in both apps)
        this.setData({ recordLines: workerRecordLines(r.record) })
      } catch (err) {
        this.setData({ recordLines: [] })
      }
    },
    onNickname(e) {
      this.setData({ nickname: e.detail.value })
    },
    async saveNickname(e) {
      const nickname = String((e && e.detail && e.detail.value) || this.data.nickname).trim()
      if (!nickname || nickname === this.data.savedNickname) return
      try {
        const me = await ctx().api.patch('/me', { nickname })
        this.setData({ nickname: me.nickname, savedNickname: me.nickname })
        toast('昵称已保存', 'success')
      } catch (err) {
        showError(err)
      }
    },
    async onChooseAvatar(e) {
      const path = e.detail.avatarUrl
      if (!path) return
      this.setData({ avatarSrc: path, uploading: true, progress: 0 })
      try {
        const up = await ctx().api.upload(path, p => this.setData({ progress: p }))
        await ctx().api.put('/me/avatar', { ref: up.ref })
        toast('头像已更新', 'success')
      } catch (err) {
        showError(err)
      } finally {
        this.setData({ uploading: false })
      }
    },
    async logout() {
      const ok = await confirm('退出所有设备的登录', '所有手机上本账号的登录都会失效（例如手机丢失时）。本机会自动重新登录。', '全部退出')
      if (!ok) return
      try {
        await ctx().logoutEverywhere()
        toast('已退出所有设备的登录', 'success')
      } catch (err) {
        showError(err)
      }
    },
    go(e) {
      navigate(dataset(e).url)
    },
  },
})
