// Money reaches the apps as integer fen and is shown to people in yuan ("¥12.30"). Conversion is
// done on integers and strings only: no floating point ever touches an amount.

/** 1230 -> "12.30"; -5 -> "-0.05". Anything that is not a whole number shows as "—". */
function yuan(fen) {
  if (typeof fen !== 'number' || !Number.isInteger(fen)) return '—'
  const sign = fen < 0 ? '-' : ''
  const abs = Math.abs(fen)
  const cents = String(abs % 100).padStart(2, '0')
  return `${sign}${Math.floor(abs / 100)}.${cents}`
}

/** "¥12.30" */
function yuanText(fen) {
  const y = yuan(fen)
  return y === '—' ? y : y[0] === '-' ? `-¥${y.slice(1)}` : `¥${y}`
}

/** A ledger amount with its sign: "+12.30" / "-12.30". */
function signedYuan(fen) {
  const y = yuan(fen)
  return y === '—' || fen < 0 ? y : `+${y}`
}

/**
 * What a person typed ("12", "12.3", "12.30", "¥12") as fen, or null when it is not an amount
 * with at most two decimals.
 */
function parseYuan(text) {
  const s = String(text == null ? '' : text).trim().replace(/^[¥￥]/, '')
  const m = /^(\d{1,9})(?:\.(\d{0,2}))?$/.exec(s)
  if (!m) return null
  return Number(m[1]) * 100 + Number((m[2] || '').padEnd(2, '0'))
}

/** floor(amount × bp / 10 000), the server's rounding for fees and rewards. */
function basisPoints(fen, bp) {
  return Math.floor((fen * bp) / 10000)
}

/** "10%" / "2.5%" for a ratio in basis points. */
function percentText(bp) {
  const whole = Math.floor(bp / 100)
  const rest = bp % 100
  return rest ? `${whole}.${String(rest).padStart(2, '0').replace(/0$/, '')}%` : `${whole}%`
}

module.exports = { yuan, yuanText, signedYuan, parseYuan, basisPoints, percentText }
