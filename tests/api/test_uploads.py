"""Uploaded images are decoded whole and re-encoded: only pixels are stored (issue 17 item 15).

Crafted files: a polyglot (a real PNG with an HTML page after it), a PNG signature followed by
HTML, truncated PNG and JPEG files, a JPEG carrying EXIF GPS coordinates, decompression bombs, and a
per-user storage quota (with the race for its last bytes on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import io
import os
import zlib

import pytest
from PIL import Image

from models import settings as market_settings
from models.uploads import Upload
from tests.api import _support as S

pytestmark = pytest.mark.asyncio

HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def image_bytes(fmt: str = "PNG", size=(32, 24), color=(200, 30, 90), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt, **save)
    return out.getvalue()


def noise_png(side: int) -> bytes:
    """An incompressible PNG of about side² × 3 bytes."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (39.0, 54.0, 27.0), 3: "E", 4: (116.0, 23.0, 30.0)})  # Beijing, to the second
    return exif


def png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int) -> bytes:
    """A real decompression bomb: side × side black grayscale pixels, a few dozen kB compressed."""
    import struct

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming a gigantic size, with almost no data."""
    import struct

    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


async def upload(client, end: str, data: bytes, name: str = "x.png", mime: str = "image/png"):
    return await client.post(f"/api/v1/{end}/uploads", files={"file": (name, data, mime)})


async def test_a_polyglot_keeps_its_pixels_and_loses_its_html(live):
    wrk = await live.login("worker", "wrkpoly")
    original = image_bytes("PNG")
    async with live.client(wrk.token) as k:
        r = await upload(k, "worker", original + HTML)
        assert r.status_code == 201, r.text
        stored = (await k.get(f"/api/v1/worker/uploads/{r.json()['ref']}")).content
    assert b"<html" not in stored and b"script" not in stored
    assert r.json()["size_bytes"] == len(stored) and r.json()["content_type"] == "image/png"
    with Image.open(io.BytesIO(stored)) as img, Image.open(io.BytesIO(original)) as want:
        assert img.format == "PNG" and img.convert("RGB").tobytes() == want.convert("RGB").tobytes()


async def test_files_that_are_not_whole_images_are_rejected_and_nothing_is_stored(live, tmp_path):
    wrk = await live.login("worker", "wrkcraft")
    png, jpeg = image_bytes("PNG", (64, 64)), image_bytes("JPEG", (64, 64))
    crafted = {
        "PNG signature then HTML": b"\x89PNG\r\n\x1a\n" + HTML,
        "JPEG signature then HTML": b"\xff\xd8\xff\xe0" + HTML,
        "GIF signature then HTML": b"GIF89a" + HTML,
        "truncated PNG": png[: len(png) // 2],
        "truncated JPEG": jpeg[: len(jpeg) // 2],
        "PNG with a corrupt IDAT": png.replace(b"IDAT", b"IDAT\x00\xff", 1),
        "an SVG (script-capable)": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "a BMP (not an accepted type)": image_bytes("BMP"),
        "a TIFF (not an accepted type)": image_bytes("TIFF"),
    }
    before = await S.snapshot()
    async with live.client(wrk.token) as k:
        for label, data in crafted.items():
            r = await upload(k, "worker", data)
            assert r.status_code == 400 and r.json()["error"]["code"] == "upload_rejected", (label, r.status_code, r.text[:200])
    assert await S.snapshot() == before
    uploads_dir = tmp_path / "uploads"
    assert not uploads_dir.exists() or not any(p.is_file() for p in uploads_dir.rglob("*"))


async def test_exif_gps_is_gone_after_upload_and_the_orientation_is_applied(live):
    wrk = await live.login("worker", "wrkgps")
    original = image_bytes("JPEG", (40, 20), exif=exif_with_gps().tobytes())
    with Image.open(io.BytesIO(original)) as img:  # the crafted file really carries GPS
        assert img.getexif().get_ifd(0x8825)[2] == (39.0, 54.0, 27.0)
    async with live.client(wrk.token) as k:
        r = await upload(k, "worker", original, "photo.jpg", "image/jpeg")
        assert r.status_code == 201, r.text
        stored = (await k.get(f"/api/v1/worker/uploads/{r.json()['ref']}")).content
    assert r.json()["content_type"] == "image/jpeg"
    assert b"Exif" not in stored and b"PhoneMaker" not in stored
    with Image.open(io.BytesIO(stored)) as img:
        assert len(img.getexif()) == 0 and not img.getexif().get_ifd(0x8825)
        assert img.size == (20, 40)  # rotated as the phone meant it, since the tag that said so is gone
        assert "icc_profile" not in img.info and "exif" not in img.info


async def test_decompression_bombs_are_refused_before_decoding(live):
    wrk = await live.login("worker", "wrkbomb")
    bomb = png_bomb(8_000)  # 64 megapixels (64 MB decoded) from a file of a few dozen kB
    assert len(bomb) < 200_000
    async with live.client(wrk.token) as k:
        for label, data in {"8000×8000 zeros": bomb, "a header claiming 100000×100000": png_claiming(100_000, 100_000),
                            "a header claiming 1×40000000": png_claiming(1, 40_000_000)}.items():
            r = await upload(k, "worker", data)
            assert r.status_code == 400, (label, r.text)
            assert r.json()["error"]["code"] == "upload_rejected" and r.json()["error"]["details"]["reason"] == "too_many_pixels", (label, r.text)
        # Just under the limit is an ordinary image.
        r = await upload(k, "worker", png_bomb(4_000))
        assert r.status_code == 201, r.text


async def test_each_user_has_a_storage_quota(live):
    await market_settings.update({"upload_quota_mb": 1}, operator_id=1)
    wrk = await live.login("worker", "wrkquota")
    other = await live.login("worker", "wrkquota2")
    image = noise_png(330)  # ~330 kB stored: three fit in 1 MB, a fourth does not
    assert 300_000 < len(image) < 349_000
    async with live.client(wrk.token) as k:
        for _ in range(3):
            r = await upload(k, "worker", noise_png(330))
            assert r.status_code == 201, r.text
        used = sum(u.size_bytes for u in await Upload.filter(owner_id=wrk.id))
        before = await S.snapshot()
        r = await upload(k, "worker", noise_png(330))
        err = S.assert_error(r, 403, "upload_quota_exceeded")
        assert err["details"] == {"used_bytes": used, "quota_bytes": 1024 * 1024}
        assert await S.snapshot() == before
        r = await upload(k, "worker", image_bytes("PNG", (8, 8)))  # a small one still fits
        assert r.status_code == 201, r.text
    async with live.client(other.token) as k:  # the quota is per user
        assert (await upload(k, "worker", noise_png(330))).status_code == 201


@pytest.mark.postgres
async def test_concurrent_uploads_never_exceed_the_quota(live):
    """Eight uploads at once with room for three: exactly three are stored, the rest are told why."""
    await market_settings.update({"upload_quota_mb": 1}, operator_id=1)
    wrk = await live.login("worker", "wrkrace")
    files = [noise_png(330) for _ in range(8)]
    async with live.client(wrk.token) as k:
        results = await asyncio.gather(*(upload(k, "worker", f) for f in files))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [403] * 5, [(r.status_code, r.text[:100]) for r in results]
    assert all(r.json()["error"]["code"] == "upload_quota_exceeded" for r in results if r.status_code == 403)
    assert sum(u.size_bytes for u in await Upload.filter(owner_id=wrk.id)) <= 1024 * 1024
