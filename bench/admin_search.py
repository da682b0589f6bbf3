"""The panel's customer search on 100 000 users (issue 13 defect 4): how long a search takes when it
matches many, one or nobody, by nickname fragments of one to three Chinese characters, an openid
fragment, an invite code and an ID. `python -m bench.admin_search [--users N]`.

Users are written by bulk SQL (bench/seed.py `bulk_users`), then given Chinese nicknames; each query
is the panel's own (server/admin/search.py, newest 50 first), run 15 times; the median is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from bench.harness import fresh_database
from bench.seed import bulk_users
from models.users import End, User
from server.admin.search import customer_condition

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍鹏辉玲燕红健琴云飞波宁丹斌浩凯峰亮俊帆雪梅琳晨欣怡"


async def timed(q: str, runs: int = 15) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = await User.filter(customer_condition(q)).order_by("-id").limit(50)
        times.append((time.perf_counter() - start) * 1000)
        n = len(rows)
    return statistics.median(times), n


async def main(users: int) -> None:
    rnd = random.Random(13)
    async with fresh_database() as bench:
        ids = await bulk_users(bench.pool, End.WORKER, users)
        names = [rnd.choice(SURNAMES) + "".join(rnd.choice(GIVEN) for _ in range(rnd.choice((1, 2)))) for _ in ids]
        names[len(names) // 2] = "王五"
        async with bench.pool.acquire() as conn:
            await conn.execute("UPDATE users SET nickname = x.n FROM unnest($1::bigint[], $2::text[]) AS x(i, n) WHERE users.id = x.i", ids, names)
            await conn.execute("ANALYZE users")
            code = await conn.fetchval("SELECT invite_code FROM users WHERE id = $1", ids[100])
            openid = await conn.fetchval("SELECT openid FROM users WHERE id = $1", ids[200])
        cases = [("王五 (whole nickname, 2 chars)", "王五"), ("五 (1 char, matches nobody)", "五"), ("王 (1 char, many)", "王"),
                 ("李伟 (2 chars)", "李伟"), ("张秀英 (3 chars)", "张秀英"), ("赵钱孙 (matches nobody)", "赵钱孙"),
                 ("openid fragment", openid[-8:]), ("invite code", code), ("id", str(ids[300]))]
        print(f"customer search on {users} users (PostgreSQL), median of 15 runs, newest 50 first")
        for label, q in cases:
            ms, n = await timed(q)
            print(f"  {label:34s} {ms:7.1f} ms  {n:3d} rows")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().users))
