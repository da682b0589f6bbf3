"""WeChat's callbacks are a few kB: the notification routes refuse big bodies on their own, while
uploads keep their larger limit (issue 17.11)."""

from __future__ import annotations

import pytest

from wechat.sandbox import sign_notification

BIG = 12 * 1024 * 1024  # what the server as a whole accepts (the largest upload plus headroom)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/wechat/pay/notify", "/api/wechat/transfer/notify"])
async def test_a_callback_refuses_a_body_far_beyond_any_notification(live, path):
    body = b"{" + b" " * (BIG - 2) + b"}"
    r = await live.http.post(path, content=body, headers=sign_notification(live.keys, body))
    assert r.status_code == 413
    assert r.json()["code"] == "FAIL"


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/wechat/pay/notify", "/api/wechat/transfer/notify"])
async def test_a_callback_refuses_a_chunked_body_beyond_the_limit(live, path):
    async def chunks():  # 80 kB without a Content-Length: the limit holds while reading, too
        for _ in range(20):
            yield b" " * 4096

    r = await live.http.post(path, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.asyncio
async def test_uploads_keep_their_own_larger_limit(live):
    r = await live.http.post("/api/v1/worker/login", json={"code": "bob-1"})
    token = r.json()["token"]
    six_mb = b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 1024 * 1024)
    r = await live.http.post("/api/v1/worker/uploads", files={"file": ("a.png", six_mb, "image/png")},
                             headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"  # read whole, judged by the route
    small = b"\x89PNG\r\n\x1a\n" + b"\0" * (200 * 1024)
    r = await live.http.post("/api/v1/worker/uploads", files={"file": ("b.png", small, "image/png")},
                             headers={"Authorization": f"Bearer {token}"})
    assert r.status_code != 413, r.text

