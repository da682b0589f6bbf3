"""WeChat content security for the compliance gate (issue 14 §4), between `wechat/` and `models/`.

- Text: before publishing, the title, instructions and attachment text go through msgSecCheck v2
  (as the publisher, scene 3). A verdict other than "pass" is handed to `tasks.publish` as a
  verdict, which holds the task for an operator. If WeChat cannot answer, the task is held too
  (`wechat:text:unchecked`): a task nobody checked does not reach the hall.
- Images: after publishing, the attachment image is sent to mediaCheckAsync; its verdict arrives
  as the message push `wxa_media_check` at MEDIA_CHECK_PATH, signed with the push token (SHA-1 of
  the sorted token, timestamp and nonce, WeChat's 消息推送 rule). A flagged image holds the task
  (open → held, out of the hall). Until the verdict (seconds, usually) the task is in the hall:
  see docs/wechat.md.
- The sandbox stands in with configurable verdicts (`SandboxState.text_verdicts`, `media_verdicts`).

Nothing here runs inside a database transaction while WeChat is called.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from typing import Any, Mapping

from models import compliance
from wechat.errors import WeChatError
from wechat.pay import NOTIFICATION_MAX_SKEW_S

log = logging.getLogger("market.wechat.content")

MEDIA_CHECK_PATH = "/api/wechat/media_check/notify"
PUSH_TOKEN_ENV = "WECHAT_PUSH_TOKEN"  # the 消息推送 Token set in the Mini Program's admin console
SANDBOX_PUSH_TOKEN = "sandbox-push-token"


MEDIA_SUGGESTS = ("pass", "review", "risky")  # mediaCheckAsync's verdicts
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,64}")  # a trace_id: printable ASCII, no spaces or control characters


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


class ContentSecurityServices:
    """Mixed into WeChatServices (server/wechat_services.py): uses `self.mp` and `self.cfg`."""

    def _push_token(self) -> str:
        return os.environ.get(PUSH_TOKEN_ENV) or (SANDBOX_PUSH_TOKEN if self.cfg.sandbox else "")

    async def screen_text(self, user, texts: Mapping[str, str | None]) -> list[str]:
        """msgSecCheck on the task's text: [] when WeChat says pass, else the verdicts to hold it."""
        content = "\n".join(t for t in texts.values() if t)
        if not content:
            return []
        try:
            verdict = await self.mp.msg_sec_check(user.end.value, user.openid, content, title=texts.get("title"))
        except WeChatError as exc:
            log.warning("msgSecCheck failed (%s): the task is held for an operator", exc)
            return ["wechat:text:unchecked"]
        if verdict["suggest"] == "pass":
            return []
        return [f"wechat:text:{verdict['suggest']}:{verdict['label']}"]

    async def check_image(self, user, task_id: int, media_url: str) -> None:
        """mediaCheckAsync on the task's image; the verdict comes later (handle_media_check)."""
        try:
            trace_id = await self.mp.media_check_async(user.end.value, user.openid, media_url)
        except WeChatError as exc:
            log.warning("mediaCheckAsync failed for task %s (%s): held for an operator", task_id, exc)
            await compliance.record_check(task_id, "image", "error")
            await compliance.hold_open(task_id, "wechat:image:unchecked")
            return
        await compliance.record_check(task_id, "image", "pending", trace_id=trace_id)

    async def handle_media_check(self, args: Mapping[str, str], raw_body: bytes) -> tuple[int, Any]:
        """The `wxa_media_check` push: 200 "success" when recorded (or nothing to record)."""
        token = self._push_token()
        signature = args.get("signature", "")
        timestamp = args.get("timestamp", "")
        if not token or not hmac.compare_digest(push_signature(token, timestamp, args.get("nonce", "")), signature):
            return 403, "bad signature"
        # The signature covers neither the body nor the time: a signed address seen once (an access
        # log) must not be replayable for ever. WeChat's replay window, as for Pay's notifications.
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or \
                abs(time.time() - int(timestamp)) > NOTIFICATION_MAX_SKEW_S:
            return 403, "stale timestamp"
        try:
            event = json.loads(raw_body or b"{}")
        except ValueError:
            return 400, "not JSON"
        if not isinstance(event, dict):
            return 400, "not a JSON object"
        if event.get("Event") != "wxa_media_check" or not event.get("trace_id"):
            return 200, "success"  # another push event: nothing for us
        result = event.get("result") or {}
        trace_id, suggest, label = event["trace_id"], result.get("suggest") if isinstance(result, dict) else None, \
            result.get("label") if isinstance(result, dict) else None
        if not isinstance(result, dict) or not isinstance(trace_id, str) or not _PRINTABLE.fullmatch(trace_id) \
                or suggest not in MEDIA_SUGGESTS or not (label is None or (isinstance(label, int) and 0 <= label < 2**31)):
            return 400, "not a media check verdict"
        await compliance.media_verdict(trace_id, suggest, label)
        return 200, "success"

    def verify_push_address(self, args: Mapping[str, str]) -> tuple[int, str]:
        """WeChat's check of the push address when it is saved in the console: GET with
        signature, timestamp, nonce and echostr; answer echostr when the signature is ours."""
        token = self._push_token()
        if not token or not hmac.compare_digest(
                push_signature(token, args.get("timestamp", ""), args.get("nonce", "")), args.get("signature", "")):
            return 403, "bad signature"
        return 200, args.get("echostr", "")[:128]
