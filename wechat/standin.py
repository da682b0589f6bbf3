"""`python -m wechat.standin --port N`: the sandbox as a server of its own, standing in for WeChat's
hosts (api.weixin.qq.com and api.mch.weixin.qq.com) on this machine.

For testing a PRODUCTION configuration end to end (tests/deploy/test_miniature_topology.py): the
production server never mounts the built-in sandbox (wechat.sandbox must be false there); instead
its real clients are pointed, through `wechat.api_base` / `wechat.pay_base`, at this process, and
it is given real-looking credentials from the environment. This process plays WeChat's side with
the matching halves:

  WECHAT_SANDBOX_MATERIAL   JSON {merchant_private_key, platform_private_key, apiv3_key}: the
                            merchant key's public half verifies the server's requests, the platform
                            key signs answers and notifications (the server holds its public half
                            as WECHATPAY_PUBLIC_KEY), the API v3 key encrypts notifications
  WECHAT_WORKER_SECRET, WECHAT_PUBLISHER_SECRET   the AppSecrets code2Session checks
  STANDIN_CONFIG            JSON of the wechat: section (appids, mchid, serial, public_key_id)

Routes are those of the sandbox without its /sandbox prefix: /wx/... and /pay/v3/....
It refuses to start with MARKET_PRODUCTION set: it is a test tool, never part of a deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sanic import Sanic

from wechat.config import WeChatConfig
from wechat.sandbox import create_sandbox_blueprint


def create_standin() -> Sanic:
    cfg = WeChatConfig.from_dict({"sandbox": True, **json.loads(os.environ.get("STANDIN_CONFIG") or "{}")})
    app = Sanic("wechat_standin")
    app.blueprint(create_sandbox_blueprint(cfg, url_prefix="", name="standin"))
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wechat.standin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if str(os.environ.get("MARKET_PRODUCTION", "")).strip().lower() in ("1", "true", "yes", "on"):
        print("wechat.standin: refusing to run with MARKET_PRODUCTION set (a test tool, not WeChat)", file=sys.stderr)
        return 2
    create_standin().run(host=args.host, port=args.port, single_process=True, access_log=False, motd=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
