// Times arrive as ISO 8601 UTC; people read Beijing time (UTC+8, no daylight saving). Countdowns
// run against the server's clock: every response carries `now`, and the skew between it and the
// phone's clock is kept here (docs/api.md, "Countdowns").

const BEIJING_OFFSET_MS = 8 * 3600 * 1000

function pad(n) {
  return String(n).padStart(2, '0')
}

/** "2026-11-25 18:52" in Beijing time; "" for a missing time. */
function beijing(iso, { seconds = false, year = true } = {}) {
  if (!iso) return ''
  const ms = Date.parse(iso)
  if (Number.isNaN(ms)) return ''
  const d = new Date(ms + BEIJING_OFFSET_MS)
  const date = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${seconds ? ':' + pad(d.getUTCSeconds()) : ''}`
  return `${year ? d.getUTCFullYear() + '-' : ''}${date} ${time}`
}

/** 65 000 ms -> "01:05"; 3 725 000 -> "1:02:05"; never negative. */
function countdownText(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000))
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = total % 60
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`
}

/** 180 -> "3分钟"; 90 -> "1分30秒"; 7200 -> "2小时". */
function durationText(seconds) {
  const s = Math.max(0, Math.round(seconds))
  if (s % 3600 === 0 && s >= 3600) return `${s / 3600}小时`
  if (s >= 60) return s % 60 ? `${Math.floor(s / 60)}分${s % 60}秒` : `${s / 60}分钟`
  return `${s}秒`
}

/** The server's clock as seen from the phone: sync(now) after each response, then now()/remainingMs(). */
function createClock() {
  let skewMs = 0
  return {
    sync(nowIso) {
      const server = Date.parse(nowIso)
      if (!Number.isNaN(server)) skewMs = server - Date.now()
    },
    now() {
      return Date.now() + skewMs
    },
    remainingMs(deadlineIso) {
      const deadline = Date.parse(deadlineIso)
      return Number.isNaN(deadline) ? 0 : Math.max(0, deadline - (Date.now() + skewMs))
    },
    get skewMs() {
      return skewMs
    },
  }
}

module.exports = { beijing, countdownText, durationText, createClock, BEIJING_OFFSET_MS }
