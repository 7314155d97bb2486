"""The hub's file idioms, in one place: a path below a root, an atomic write,
and a YAML list that administrators edit while the hub runs (reloaded when it
changes, the last good version kept when an edit breaks it).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: 100,000 datasets load in seconds

log = logging.getLogger("JupyterHub")


def relative_below(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` ("" for the root itself), or None when it is not below.

    Both are normalised first, so ``/data/../etc`` is not below ``/data``;
    only whole components count (``/data2`` is not below ``/data``).
    """
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    if path == root:
        return ""
    prefix = root.rstrip("/") + "/"
    if path.startswith(prefix):
        return path[len(prefix):]
    return None


def is_below(path: str, roots) -> bool:
    """True when ``path`` is one of ``roots`` or lies below one of them."""
    return any(relative_below(path, root) is not None for root in roots)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place.

    Readers see the old content or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """:func:`write_atomic` of ``data`` as indented JSON."""
    return write_atomic(path, json.dumps(data, indent=2))


def file_stamp(path: str) -> tuple:
    """What changes when the file is edited or replaced (raises OSError if it is gone)."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_section(path: str, section: str, error: type[Exception], what: str) -> tuple[tuple, list]:
    """``(stamp, list)`` of the top-level ``section:`` list of a YAML file; ``error`` on failure."""
    try:
        stamp = file_stamp(path)
        with open(path, "rb") as f:
            doc = yaml.load(f, Loader=_LOADER)
    except (OSError, yaml.YAMLError) as e:
        raise error(f"Cannot read {what} {path}: {e}") from e
    entries = doc.get(section) if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise error(f"{path}: expected a top-level '{section}:' list")
    return stamp, entries


def parse_records(entries: list, from_dict: Callable, key: str, error: type[Exception], source: str, kind: str) -> list:
    """Build records with ``from_dict``, each ``key`` attribute unique; ``error`` says which entry is wrong."""
    records, seen = [], set()
    for i, entry in enumerate(entries):
        try:
            record = from_dict(entry)
        except ValueError as e:
            raise error(f"{source}: {kind} #{i + 1}: {e}") from e
        value = getattr(record, key)
        if value in seen:
            raise error(f"{source}: {kind} {key} {value!r} appears twice")
        seen.add(value)
        records.append(record)
    return records


class ReloadingYamlFile:
    """The top-level ``section:`` list of a YAML file, parsed by ``parse``, re-read when the file changes.

    ``parse(entries, path)`` turns the list into the value served (raising
    ``error`` when it is invalid). A broken or vanished file keeps the last
    good value in service and logs why; only a file that never parsed is an
    error. :meth:`load` blocks (a large file: call it in a thread).
    """

    def __init__(self, path: str, section: str, parse: Callable[[list, str], Any],
                 error: type[Exception], what: str, logger: logging.Logger | None = None):
        self.path = path
        self.section = section
        self.parse = parse
        self.error = error
        self.what = what
        self.log = logger or log
        self.value = None
        self._stamp = None
        self._lock = threading.Lock()

    def stamp(self) -> tuple | None:
        """The file's current stamp, None when it cannot be read."""
        try:
            return file_stamp(self.path)
        except OSError:
            return None

    def is_current(self) -> bool:
        """True when the value served is that of the file as it is now (or of its last broken version)."""
        return self.value is not None and self.stamp() == self._stamp

    def load(self) -> Any:
        """The value of the file's latest good version (re-parsed if the file changed)."""
        with self._lock:
            stamp = self.stamp()
            if stamp is not None and stamp == self._stamp and self.value is not None:
                return self.value
            try:
                stamp, entries = read_section(self.path, self.section, self.error, self.what)
                value = self.parse(entries, self.path)
            except self.error:
                if self.value is None:
                    raise
                # Remember the broken version, so it is not parsed again until edited.
                self._stamp = stamp if stamp is not None else self._stamp
                self.log.exception("%s %s is invalid or unreadable, serving the last version", self.what, self.path)
                return self.value
            self.value, self._stamp = value, stamp
            return value
