"""A writer killed with SIGKILL mid-flush: every flush it reported is on disk, no flush is half there."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.sqlite import SqliteStorage

REPO = Path(__file__).resolve().parents[2]
BATCH = 2000

# Flushes batch after batch of new devices (each with a channel) and reports each committed batch.
WRITER = f"""
import asyncio, sys
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Channel
from gbgw.registry.sqlite import SqliteStorage

async def main() -> None:
    storage = SqliteStorage(sys.argv[1])
    await storage.open()
    registry = DeviceRegistry(storage)
    batch = 0
    while True:
        for n in range({BATCH}):
            device_id = f"{{batch:06d}}{{n:014d}}"
            registry.register(device_id, transport="UDP", host="192.0.2.1", port=5060, expires=3600, now=0.0)
            registry.replace_channels(device_id, [Channel(id=device_id, device_id=device_id)], partial=False)
        await registry.flush()
        print(batch, flush=True)
        batch += 1

asyncio.run(main())
"""


async def test_flushed_data_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    assert child.stdout is not None
    reported = []
    try:
        for line in child.stdout:
            reported.append(int(line))
            if len(reported) == 5:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert reported == [0, 1, 2, 3, 4]

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

    storage = SqliteStorage(path)
    await storage.open()
    registry = DeviceRegistry(storage)
    await registry.load()
    per_batch = Counter(int(d.id[:6]) for d in registry.devices())
    for batch in reported:
        assert per_batch[batch] == BATCH
    # A batch being written at the kill is either complete or absent.
    assert all(count == BATCH for count in per_batch.values())
    assert all(d.channel_count == 1 and len(registry.channels(d.id)) == 1 for d in registry.devices())
    assert registry.is_registered(f"{0:06d}{0:014d}", 100.0)
    await storage.close()
