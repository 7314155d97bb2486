"""The facility dataset catalogue: the record, access rules and backends.

A backend answers two questions for a user, identified by the set of their
JupyterHub groups: *which datasets may I see, page by page, matching this
text?* (``search``) and *may I use this dataset?* (``get``). Access is granted
when a dataset is public or one of its ``access_groups`` is one of the user's
groups; ``see_all`` bypasses that for administrators when the deployment
allows it.

Backends are picked with ``c.FacilitySpawner.catalog_class``: ``"yaml"``
(:class:`YamlCatalog`), ``"scicat"`` (:class:`hub_ext.scicat.SciCatCatalog`)
or an import string ``"package.module.ClassName"``.
"""

import asyncio
import os
import re
import time
from dataclasses import asdict, dataclass, field
from importlib import import_module

import numpy as np
from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from .yamlfile import file_stamp, parse_records, read_section

#: A pid is an identifier, never a path: printable, no whitespace, bounded.
PID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,254}$")


class CatalogError(Exception):
    """The catalogue cannot answer (unreachable, malformed). Says what to do."""

    user_error = True


def valid_pid(pid):
    """True when ``pid`` has the shape of an identifier (no ``..``, no whitespace)."""
    return isinstance(pid, str) and bool(PID_PATTERN.match(pid)) and ".." not in pid


def slugify(pid):
    """A directory name for a dataset: ``xfel:p002120:r0029`` -> ``xfel-p002120-r0029``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", pid).strip("-.")
    return slug[:100] or "dataset"


def _tuple_of_str(value, name):
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings, not {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Dataset:
    """One catalogued dataset, as the notebook servers see it."""

    pid: str
    title: str
    facility: str = ""
    instrument: str = ""
    proposal: str = ""
    path: str = ""  # absolute, as mounted for the notebook servers
    access_groups: tuple = ()
    public: bool = False
    techniques: tuple = ()
    size_bytes: int | None = None
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_dict(cls, d):
        """Build and check a record from a mapping (YAML entry, JSON)."""
        if not isinstance(d, dict):
            raise ValueError(f"a dataset must be a mapping, not {d!r}")
        pid = d.get("pid")
        if not valid_pid(pid):
            raise ValueError(f"dataset pid {pid!r} is not a valid identifier")
        path = d.get("path") or ""
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ValueError(f"dataset {pid}: path must be absolute, not {path!r}")
        size = d.get("size_bytes")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise ValueError(f"dataset {pid}: size_bytes must be a non-negative integer")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            pid=pid,
            title=str(d.get("title") or pid),
            facility=str(d.get("facility") or ""),
            instrument=str(d.get("instrument") or ""),
            proposal=str(d.get("proposal") or ""),
            path=os.path.normpath(path),
            access_groups=_tuple_of_str(d.get("access_groups"), "access_groups"),
            public=bool(d.get("public", False)),
            techniques=_tuple_of_str(d.get("techniques"), "techniques"),
            size_bytes=size,
            description=str(d.get("description") or ""),
            extra={k: v for k, v in d.items() if k not in known},
        )

    @property
    def slug(self):
        return slugify(self.pid)

    def visible_to(self, groups, see_all=False):
        return see_all or self.public or bool(set(self.access_groups) & set(groups))

    def search_text(self):
        return " ".join((self.pid, self.title, self.proposal, self.instrument)).lower()

    def to_dict(self):
        d = asdict(self)
        d.pop("extra")
        d["access_groups"] = list(self.access_groups)
        d["techniques"] = list(self.techniques)
        d["slug"] = self.slug
        return d


@dataclass
class Page:
    """One page of search results; ``total`` counts every match."""

    total: int
    offset: int
    limit: int
    items: list

    def to_dict(self):
        return {
            "total": self.total,
            "offset": self.offset,
            "limit": self.limit,
            "items": [d.to_dict() for d in self.items],
        }


class Catalog(LoggingConfigurable):
    """Base class of catalogue backends. Subclasses implement ``search`` and ``get``."""

    max_page_size = Integer(
        100, help="Largest page a search may ask for; larger requests are clamped."
    ).tag(config=True)

    async def search(self, groups, query="", facility="", offset=0, limit=20, see_all=False):
        """Datasets visible to ``groups`` matching every word of ``query``."""
        raise NotImplementedError

    async def get(self, pid, groups, see_all=False):
        """The dataset ``pid`` if it exists and ``groups`` may use it, else None.

        Unknown and forbidden look the same on purpose: a user learns nothing
        about datasets they may not see.
        """
        raise NotImplementedError

    async def facilities(self):
        """Facility names in the catalogue, for the form's filter."""
        return []

    def _clamp(self, offset, limit):
        offset = max(0, int(offset))
        limit = min(max(1, int(limit)), self.max_page_size)
        return offset, limit


class _Index:
    """Column arrays over a list of datasets, so a search touches no Python loop
    per dataset: visibility is a boolean mask per group set, text matching
    splits one long string at the query (C speed) and maps hits to rows.

    The string searched is that of the rows the user may see (cached per group
    set), so a text search costs in proportion to the user's datasets, not to
    the whole catalogue: with 100,000 datasets a scan of the full text took
    3-6 ms a query, 1.7x the whole request time at 10 datasets.
    """

    #: Upper bound on the characters held by cached per-group-set texts, as a
    #: multiple of the full text (memory stays within a few catalogue copies).
    subset_text_budget = 4

    def __init__(self, datasets):
        self.datasets = datasets
        self.by_pid = {d.pid: d for d in datasets}
        n = len(datasets)
        texts = [d.search_text().replace("\n", " ") for d in datasets]
        lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=n)
        self.starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if n else np.zeros(0, np.int64)
        self.text = "\n".join(texts)
        self.public = np.fromiter((d.public for d in datasets), dtype=bool, count=n)
        self.group_rows = {}
        for i, d in enumerate(datasets):
            for g in d.access_groups:
                self.group_rows.setdefault(g, []).append(i)
        self.group_rows = {g: np.asarray(r, dtype=np.int64) for g, r in self.group_rows.items()}
        names = sorted({d.facility for d in datasets})
        self.facility_names = names
        codes = {f: i for i, f in enumerate(names)}
        self.facility = np.fromiter((codes[d.facility] for d in datasets), dtype=np.int32, count=n)
        self._visible = {}
        self._subsets = {}
        self._subset_chars = 0

    def visible(self, groups, see_all):
        key = None if see_all else frozenset(groups)
        mask = self._visible.get(key)
        if mask is None:
            if see_all:
                mask = np.ones(len(self.datasets), dtype=bool)
            else:
                mask = self.public.copy()
                for g in key:
                    rows = self.group_rows.get(g)
                    if rows is not None:
                        mask[rows] = True
            if len(self._visible) > 1024:
                self._visible.clear()
            self._visible[key] = mask
        return mask

    def _subset(self, groups, see_all):
        """``(rows, starts, text)``: the search text of the rows visible to ``groups``."""
        if see_all:
            return np.arange(len(self.datasets)), self.starts, self.text
        key = frozenset(groups)
        sub = self._subsets.get(key)
        if sub is None:
            rows = np.flatnonzero(self.visible(groups, see_all))
            ends = np.append(self.starts[1:] - 1, len(self.text))
            text = "\n".join([self.text[a:b] for a, b in zip(self.starts[rows].tolist(), ends[rows].tolist())])
            lengths = ends[rows] - self.starts[rows] + 1
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
            if self._subset_chars + len(text) > self.subset_text_budget * len(self.text) + 1_000_000:
                self._subsets.clear()
                self._subset_chars = 0
            sub = self._subsets[key] = (rows, starts, text)
            self._subset_chars += len(text)
        return sub

    @staticmethod
    def _matching(starts, text, word):
        """Boolean mask over the records of ``text`` (starting at ``starts``) containing ``word``."""
        pieces = text.split(word)
        mask = np.zeros(len(starts), dtype=bool)
        if len(pieces) > 1:
            lengths = np.fromiter(map(len, pieces[:-1]), dtype=np.int64, count=len(pieces) - 1)
            positions = np.cumsum(lengths + len(word)) - len(word)
            mask[np.searchsorted(starts, positions, side="right") - 1] = True
        return mask

    def search(self, groups, query, facility, offset, limit, see_all):
        mask = self.visible(groups, see_all)
        if facility:
            if facility not in self.facility_names:
                return 0, []
            mask = mask & (self.facility == self.facility_names.index(facility))
        words = query.lower().split()
        if words:
            rows, starts, text = self._subset(groups, see_all)
            hits = np.ones(len(rows), dtype=bool)
            for word in words:
                hits &= self._matching(starts, text, word)
            found = np.zeros(len(self.datasets), dtype=bool)
            found[rows[hits]] = True
            mask = mask & found
        rows = np.flatnonzero(mask)
        return len(rows), [self.datasets[i] for i in rows[offset : offset + limit]]


class YamlCatalog(Catalog):
    """Datasets listed in a YAML file (``datasets:`` list), reloaded when it changes.

    Adding a dataset is editing the file: the next form or search sees it,
    without restarting the hub. A file that stops parsing keeps the last good
    version in service and logs why.
    """

    path = Unicode(
        "",
        help="""Path of the YAML catalogue file.

        Format::

            datasets:
              - pid: "xfel:p002120:r0029"
                title: "Lysozyme SFX, AGIPD-1M, run 29"
                facility: EuXFEL
                instrument: SPB/SFX
                proposal: "2120"
                path: /data/exfel/p002120/r0029
                access_groups: [p2120]
                public: false
                techniques: [serial crystallography]
        """,
    ).tag(config=True)

    check_interval = Float(
        1.0,
        help="Seconds between checks of the file's modification time (0: check on every call).",
    ).tag(config=True)

    reload_wait = Float(
        5.0,
        help="""Seconds a request waits for an edited catalogue to load.

        After that it is answered from the previous version while the new one
        finishes loading in the background.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._index = None
        self._stamp = None
        self._checked = 0.0
        self._loading = None

    def load(self):
        """Parse the file into an index (blocking; callers run it in a thread)."""
        stamp, entries = read_section(self.path, "datasets", CatalogError, "the dataset catalogue")
        datasets = parse_records(entries, Dataset.from_dict, "pid", CatalogError, self.path, "dataset")
        return stamp, _Index(datasets)

    async def _current(self):
        """The index of the file's latest good version.

        A changed file is parsed in a thread; requests wait for it up to
        ``reload_wait`` seconds and are answered from the previous version
        after that, so a large catalogue (100,000 entries parse in tens of
        seconds) never stalls the form. Only the very first load is waited for.
        """
        if self._index is not None and time.monotonic() - self._checked < self.check_interval:
            return self._index
        if not self.path:
            raise CatalogError("No catalogue file configured: set c.YamlCatalog.path")
        try:
            stamp = file_stamp(self.path)
        except OSError as e:
            if self._index is None:
                raise CatalogError(f"Cannot read the dataset catalogue {self.path}: {e}") from e
            self.log.error("Catalogue %s unreadable, serving the last version: %s", self.path, e)
            return self._index
        self._checked = time.monotonic()
        if stamp == self._stamp:
            return self._index
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load(stamp))
        if self._index is None:
            await self._loading
            return self._index
        try:
            await asyncio.wait_for(asyncio.shield(self._loading), self.reload_wait)
        except asyncio.TimeoutError:
            self.log.info("Catalogue %s still loading; answering from the previous version", self.path)
        return self._index

    async def _load(self, stamp):
        try:
            loaded_stamp, index = await asyncio.to_thread(self.load)
            self._stamp, self._index = loaded_stamp, index
            self.log.info("Loaded %d datasets from %s", len(index.datasets), self.path)
        except CatalogError:
            if self._index is None:
                raise
            # Remember the broken version, so it is not parsed again until edited.
            self._stamp = stamp
            self.log.exception("Catalogue %s is invalid, serving the last version", self.path)
        finally:
            self._loading = None

    async def search(self, groups, query="", facility="", offset=0, limit=20, see_all=False):
        index = await self._current()
        offset, limit = self._clamp(offset, limit)
        total, items = index.search(set(groups), query or "", facility or "", offset, limit, see_all)
        return Page(total=total, offset=offset, limit=limit, items=items)

    async def get(self, pid, groups, see_all=False):
        if not valid_pid(pid):
            return None
        index = await self._current()
        d = index.by_pid.get(pid)
        return d if d is not None and d.visible_to(groups, see_all) else None

    async def facilities(self):
        return list((await self._current()).facility_names)


CATALOG_ALIASES = {
    "yaml": "hub_ext.catalog.YamlCatalog",
    "scicat": "hub_ext.scicat.SciCatCatalog",
}


def catalog_class_from_name(name):
    """Resolve ``"yaml"``, ``"scicat"`` or ``"pkg.module.Class"`` to a Catalog subclass."""
    if isinstance(name, type):
        cls = name
    else:
        target = CATALOG_ALIASES.get(name, name)
        module, _, attr = target.rpartition(".")
        if not module:
            raise ValueError(f"catalog_class {name!r}: use 'yaml', 'scicat' or 'module.Class'")
        cls = getattr(import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Catalog)):
        raise ValueError(f"catalog_class {name!r} is not a hub_ext.catalog.Catalog subclass")
    return cls
