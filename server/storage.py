"""Where uploaded bytes live: a tiny interface, with local disk as the default implementation.

Files are stored under their random upload ref (never a user-chosen name) in a two-level fan-out
directory. Another backend (an object store) only has to provide `save`, `open_bytes`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    async def save(self, ref: str, data: bytes) -> None: ...

    async def open_bytes(self, ref: str) -> bytes | None: ...


class LocalDiskStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        safe = "".join(c for c in ref if c.isalnum() or c in "-_")
        return self.root / safe[-2:] / safe

    async def save(self, ref: str, data: bytes) -> None:
        path = self._path(ref)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)

        await asyncio.to_thread(write)

    async def open_bytes(self, ref: str) -> bytes | None:
        path = self._path(ref)
        return await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)
