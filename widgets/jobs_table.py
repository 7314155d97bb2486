"""The extension's jobs of one kind as an HTML table (what a new widget shows after a restart)."""

from __future__ import annotations

import ipywidgets as W

from .messages import table


def when(stamp: str | None) -> str:
    """A record's UTC time stamp as ``2026-12-07 10:27:55``."""
    return (stamp or "")[:19].replace("T", " ")


class JobsTable(W.HTML):
    """``refresh(jobs)`` shows id, state, progress, start, output or error, newest first."""

    def __init__(self, title: str = "jobs of this server", **kw):
        super().__init__(**kw)
        self.title = title
        self.add_class("daas-jobs")

    def refresh(self, jobs: list[dict]) -> None:
        rows = []
        for job in sorted(jobs, key=lambda j: j.get("created") or "", reverse=True)[:10]:
            outcome = job.get("error") or (job.get("result") or {}).get("output") or job.get("options", {}).get("output", "")
            rows.append([job["id"][:8], job["state"], f"{100 * float(job.get('progress') or 0):.0f} %",
                         when(job.get("started") or job.get("created")), outcome])
        body = table(rows, ["job", "state", "progress", "started", "output / error"]) if rows else "<i>none yet</i>"
        self.value = f"<b>{self.title}</b>{body}"
