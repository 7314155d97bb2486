"""Job records on disk: one JSON file per job, written atomically.

A restarted server lists finished and failed jobs again; a job that was
queued or running when the server died is marked ``interrupted``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled", "interrupted")

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json_atomic(path: Path, data) -> None:
    """Write *data* as JSON to a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JobStore:
    """The records of one user's jobs under ``folder`` (``<id>.json``)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.interrupted: list[dict] = []  # the records load_all found left active by a dead server

    def save(self, record: dict) -> None:
        write_json_atomic(self.folder / f"{record['id']}.json", record)

    def remove(self, job_id: str) -> None:
        (self.folder / f"{job_id}.json").unlink(missing_ok=True)

    def load_all(self) -> list[dict]:
        """Every readable record, oldest first; jobs left active by a dead server become ``interrupted``."""
        records = []
        for path in self.folder.glob("*.json"):
            try:
                record = json.loads(path.read_text())
                record["id"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("ignoring unreadable job record %s: %s", path, e)
                continue
            if record.get("state") in ACTIVE:
                record.update(state="interrupted", finished=now(),
                              error="the server stopped while this job was "
                                    f"{record['state']}; submit it again")
                self.save(record)
                self.interrupted.append(record)
            records.append(record)
        records.sort(key=lambda r: r.get("created") or "")
        return records
