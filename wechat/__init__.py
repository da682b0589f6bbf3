"""Everything that talks to WeChat — and the sandbox that stands in for it.

Modules (import them directly; this package imports nothing so that loading one piece does not
pull in Sanic or wechatpy):
  config.py       WeChatConfig.from_dict(section, env) / .validate(production)
  miniprogram.py  MiniProgramClient: code2session, access_token (stable token), send_subscribe_message, send_event
  token_store.py  MemoryTokenStore / RedisTokenStore behind AccessTokenCache
  pay.py          PayClient: JSAPI prepay, wx.requestPayment params, query/close, notifications, transfer bills,
                  WeChat's keys (微信支付公钥 or platform certificates, chosen by Wechatpay-Serial)
  keywords.py     WeChat's rules for subscription-message values (thing ≤ 20, phrase ≤ 5, amount, time ...)
  errors.py       typed outcomes (InvalidCode, Retryable, UserRefused, WeChatError, PayApiError, ...)
  sandbox.py      create_sandbox_blueprint(cfg) — the fake WeChat mounted at /sandbox
  crypto.py       RSA / AES-GCM primitives shared by pay.py and sandbox.py

Nothing here touches the database or imports models/ or server/: the core calls in, never the reverse.
"""
