"""The appeals queue (issue 13): each side's track record beside the case, and links in the task's
instructions (and the proof, the reasons) clickable — escaped, http(s) only."""

from __future__ import annotations

import pytest

from models import orders, tasks
from server.admin.appeal_records import linkify
from tests import personas
from tests.admin.conftest import appealed_order


def test_linkify_escapes_everything_and_links_only_http_addresses():
    html = str(linkify('看这里：https://example.com/a?b=1&c=2。 <script>alert(1)</script> javascript:alert(1) '
                       'http://x.test/"onmouseover="alert(1) (https://y.test/path).'))
    assert '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer nofollow" class="ext">' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert 'href="http://x.test/"' in html and 'onmouseover="' not in html  # the quote ends the address, escaped
    assert 'href="https://y.test/path"' in html and "</a>)." in html
    assert str(linkify(None)) == ""


@pytest.mark.asyncio
async def test_the_appeals_queue_shows_both_track_records_and_clickable_links(as_operator):
    order, alice, bob = await appealed_order()
    # an earlier appeal of Bob's against Alice that he won
    task = await tasks.publish(alice.id, title="Earlier", instructions="Open https://shop.example/item?id=7 and buy <b>one</b>",
                               unit_price_fen=300)
    earlier = await orders.take(task.id, bob.id)
    await orders.submit(earlier.id, bob.id, proof_text="bought")
    await orders.reject(earlier.id, alice.id, reason="no")
    await orders.appeal(earlier.id, bob.id, reason="I did")
    await orders.arbitrate(earlier.id, 1, worker_wins=True, note="ok")
    page = await as_operator.get("/admin/appeals")
    card = page.text[page.text.index(f'id="appeal-{order.id}"'):]
    assert "此前申诉 1 次（100%）：胜 1，败 0，未决 0" in card
    assert "已收到提交 2 单，驳回 2 单（100%）；被申诉 2 次，被改判 1 次（100%）" in card
    # the task page's instructions: the link is clickable, the markup shown as text
    page = await as_operator.get(f"/admin/tasks/{task.id}")
    assert '<a href="https://shop.example/item?id=7" target="_blank" rel="noopener noreferrer nofollow"' in page.text
    assert "&lt;b&gt;one&lt;/b&gt;" in page.text
    await personas.assert_books_clean()
