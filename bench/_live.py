"""Shared by the live-server benchmarks (`bench.http_take`, `bench.push_fanout`).

- `fresh_database()`: a new PostgreSQL database `bench_<random>`, migrated by the real migrations,
  opened for the domain code (Tortoise, small pool), dropped at the end whatever happens.
- Seeding the way production seeds: publishers through `users.login_or_register`, funded through
  `recharges.create` + `recharges.credit`, tasks through `tasks.publish`; workers (which move no
  money) in bulk SQL writing exactly the rows `login_or_register` writes (user, its two accounts,
  the `user.register` audit row). Tokens come from `miniprogram_api.auth.issue_token` with the
  server's development secret.
- `ServerProcess`: the real `python -m server` (or any script) as a subprocess in its own process
  group, with its worker PIDs, CPU time and RSS; stopped by its own PID/process group.
- CPU accounting from /proc, so every figure can say what else was using the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Sequence

import asyncpg

from models import clock, db
from models import settings as market_settings

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# Redis database for the servers under test. Pub/sub channels are global across Redis databases, so
# clients filter events by the ids of what this run published.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
UNIT_PRICE_FEN = 100  # P = ¥1.00, F = 10 fen
CLK_TCK = os.sysconf("SC_CLK_TCK")
_seq = itertools.count(1)

# Production defaults, except a take window long enough that no task expires during a run.
SETTINGS: dict[str, int] = dict(
    min_unit_price_fen=100, max_unit_price_fen=10_000, max_quantity=100, publish_fee_bp=1_000,
    worker_invite_bp=200, publisher_invite_bp=1_000, withdraw_fee_bp=100, min_withdraw_fen=1_000,
    daily_withdraw_cap_fen=500_000, max_orders_in_progress=1, take_window_s=3_600, countdown_s=300,
    review_window_s=1_200, appeal_window_s=600,
)


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _server_and_name(url: str) -> tuple[str, str]:
    base, _, name = url.rpartition("/")
    return base, name.split("?")[0]


@contextlib.asynccontextmanager
async def fresh_database(pool_max: int = 8) -> AsyncIterator[str]:
    """Create, migrate and open (Tortoise) a new database; yield its URL; drop it on the way out."""
    server, _ = _server_and_name(ADMIN_URL)
    name = f"bench_{secrets.token_hex(4)}"
    url = f"{server}/{name}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    log(f"database {name} created")
    try:
        await db.migrate_db(url)
        clock.reset()
        market_settings.set_seed(SETTINGS)
        market_settings.invalidate_cache()
        await db.init_db(f"{url}?maxsize={pool_max}", migrate=False)
        yield url
    finally:
        with contextlib.suppress(Exception):
            await db.close_db()
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"database {name} dropped")
        finally:
            await admin.close()


# --- seeding -----------------------------------------------------------------------------------------
async def publishers(count: int) -> list[int]:
    from models.users import End, login_or_register

    return [(await login_or_register(End.PUBLISHER, f"bench-pub-{secrets.token_hex(4)}-{next(_seq)}"))[0].id for _ in range(count)]


async def fund(user_id: int, amount_fen: int) -> None:
    """Recharge through the path a verified WeChat Pay notification takes, in payments ≤ the cap."""
    from models import recharges

    while amount_fen > 0:
        part = min(amount_fen, recharges.MAX_RECHARGE_FEN)
        n = next(_seq)
        r = await recharges.create(user_id, part, request_id=f"bench-fund-{n}")
        await recharges.credit(r.out_trade_no, transaction_id=f"bench-tx-{user_id}-{n}", amount_fen=part)
        amount_fen -= part


async def publish_tasks(publisher_ids: Sequence[int], count: int, *, callers: int = 8, fund_first: bool = True) -> list[int]:
    """`count` one-slot tasks at UNIT_PRICE_FEN through `tasks.publish`, round-robin over publishers."""
    from models import tasks

    fee = UNIT_PRICE_FEN * SETTINGS["publish_fee_bp"] // 10_000
    if fund_first:
        per = -(-count // len(publisher_ids))
        await asyncio.gather(*(fund(p, per * (UNIT_PRICE_FEN + fee)) for p in publisher_ids))
    ids = [0] * count
    todo = iter(range(count))

    async def caller() -> None:
        for i in todo:
            t = await tasks.publish(publisher_ids[i % len(publisher_ids)], title=f"bench task {i}",
                                    instructions="Do the thing.", unit_price_fen=UNIT_PRICE_FEN, quantity=1)
            ids[i] = t.id

    await asyncio.gather(*(caller() for _ in range(callers)))
    return ids


async def bulk_workers(url: str, count: int) -> list[int]:
    """Register `count` workers as `login_or_register` does (user row, two accounts, audit row)."""
    from models.users import new_invite_code

    now = clock.now()
    codes: set[str] = set()
    while len(codes) < count:
        codes.add(new_invite_code())
    codes_l = list(codes)
    ids: list[int] = []
    conn = await asyncpg.connect(url)
    try:
        for start in range(0, count, 5_000):
            stop = min(count, start + 5_000)
            openids = [f"bench-w-{secrets.token_hex(3)}-{next(_seq)}" for _ in range(start, stop)]
            async with conn.transaction():
                rows = await conn.fetch(
                    'INSERT INTO users ("end", openid, unionid, nickname, invite_code, inviter_id, banned, '
                    "token_version, orders_in_progress, withdrawn_today_fen, created_at) "
                    "SELECT 'worker', o, NULL, '', c, NULL, false, 0, 0, 0, $1 "
                    "FROM unnest($2::text[], $3::text[]) AS x(o, c) RETURNING id",
                    now, openids, codes_l[start:stop],
                )
                new = [r["id"] for r in rows]
                await conn.execute(
                    "INSERT INTO accounts (code, kind, user_id, shard, balance_fen, may_go_negative) "
                    "SELECT 'u:' || u || ':' || k, k, u, 0, 0, false FROM unnest($1::bigint[]) AS u "
                    "CROSS JOIN (VALUES ('available'), ('withdrawing')) AS kinds(k)",
                    new,
                )
                await conn.execute(
                    "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, created_at) "
                    "SELECT 'user', u, 'user.register', 'user', u, jsonb_build_object('end', 'worker', 'inviter_id', NULL), $2 "
                    "FROM unnest($1::bigint[]) AS u",
                    new, now,
                )
            ids += new
    finally:
        await conn.close()
    return ids


async def worker_tokens(worker_ids: Sequence[int]) -> list[str]:
    """Access tokens signed with the keys the server uses (the dev key when none is set), valid for
    the length of a benchmark run."""
    from miniprogram_api.auth import issue_token
    from models.users import User
    from server.config import key_ring, load_config

    keys = key_ring(load_config())
    users = {u.id: u for u in await User.filter(id__in=list(worker_ids))}
    return [issue_token(keys, users[w], ttl_s=3 * 3600)[0] for w in worker_ids]


async def books_are_clean() -> str:
    from models import ledger

    report = await ledger.audit()
    return "CLEAN" if report.ok else "PROBLEMS: " + "; ".join(report.problems[:3])


# --- processes ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def pids_named(*names: str) -> list[int]:
    """Every process whose command name is one of `names` (e.g. the PostgreSQL backends)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        out.append(int(entry))
            except OSError:
                continue
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuWindow:
    """CPU used by named groups of processes, and by the whole machine, over a measured window."""

    def __init__(self, groups: dict[str, Sequence[int]]) -> None:
        self.groups = groups

    def __enter__(self) -> "CpuWindow":
        self.t0 = time.monotonic()
        self.m0 = machine_cpu()
        self.c0 = {k: sum(cpu_seconds(p) for p in pids) for k, pids in self.groups.items()}
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.monotonic() - self.t0
        m1 = machine_cpu()
        self.machine_busy = m1[0] - self.m0[0]
        self.used = {k: sum(cpu_seconds(p) for p in pids) - self.c0[k] for k, pids in self.groups.items()}

    def text(self) -> str:
        cores = lambda s: f"{s / self.seconds:.2f}"  # noqa: E731
        parts = [f"{k} {cores(v)}" for k, v in self.used.items()]
        others = self.machine_busy - sum(self.used.values())
        return f"CPU (cores busy over {self.seconds:.1f} s): " + ", ".join(parts) + f", rest of machine {cores(max(0.0, others))} (machine total {cores(self.machine_busy)} of {os.cpu_count()})"


class ServerProcess:
    """A server started as a subprocess in its own process group; stopped by that group's id."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, name: str) -> None:
        self.argv, self.env, self.port, self.name = argv, env, port, name
        self.proc: subprocess.Popen | None = None
        self.logfile = Path(f"/tmp/{name}-{os.getpid()}-{port}.log")

    @classmethod
    def market(cls, database_url: str, *, workers: int = 2, extra_env: dict[str, str] | None = None) -> "ServerProcess":
        port = free_port()
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("MARKET")]:
            del env[k]
        env.update({
            "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "PORT": str(port),
            "MARKET__WORKERS": str(workers), "MARKET__SCHEDULER__EMBEDDED": "false",
            "MARKET__ACCESS_LOG": "false", "MARKET__UPLOADS_DIR": f"/tmp/bench-uploads-{port}",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra_env or {})
        return cls([sys.executable, "-m", "server"], env, port, "market-server")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, health_path: str = "/healthz", timeout_s: float = 60) -> None:
        import httpx

        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self.logfile.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.base + health_path)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer {health_path} in {timeout_s} s:\n{self.tail()}")
                await asyncio.sleep(0.2)
            # Every worker must be up, not only the first: ask a few more times over fresh connections.
            for _ in range(20):
                await client.get(self.base + health_path, headers={"Connection": "close"})
        await asyncio.sleep(0.5)

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        return ""

    def worker_pids(self) -> list[int]:
        """The server's worker processes: the children Sanic started as `Sanic-Server-<n>-<m>`."""
        assert self.proc is not None
        return [p for p in children(self.proc.pid) if b"SANIC_WORKER_NAME=Sanic-Server" in environ(p)]

    def all_pids(self) -> list[int]:
        """The main process and every child (workers, Sanic's helper process, the resource tracker)."""
        assert self.proc is not None
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group
            os.killpg(pgid, signal.SIGKILL)


def raise_nofile(n: int) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(q / 100 * (len(sorted_values) - 1)))))
    return sorted_values[i]
