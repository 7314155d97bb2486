"""The YAML catalogue backend: datasets listed in a file administrators edit."""

import asyncio
import time

from traitlets import Float, Unicode

from ..files import ReloadingYamlFile, parse_records
from .base import Catalog, CatalogError, Dataset, Page, valid_pid
from .index import SearchIndex


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
        self._file = None
        self._checked = 0.0
        self._loading = None

    @staticmethod
    def parse(entries, source):
        """A search index over the ``datasets:`` list (CatalogError names a bad entry)."""
        return SearchIndex(parse_records(entries, Dataset.from_dict, "pid", CatalogError, source, "dataset"))

    def load(self):
        """The index of the file's latest good version (blocking; callers run it in a thread)."""
        return self._file.load()

    @property
    def _index(self):
        return self._file.value if self._file is not None else None

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
        if self._file is None or self._file.path != self.path:
            self._file = ReloadingYamlFile(self.path, "datasets", self.parse, CatalogError, "the dataset catalogue", self.log)
        if self._file.is_current():
            self._checked = time.monotonic()
            return self._index
        if self._file.value is not None and self._file.stamp() is None:
            self.log.error("Catalogue %s unreadable, serving the last version", self.path)
            return self._index
        self._checked = time.monotonic()
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        if self._index is None:
            # shielded: a caller that gives up (a federated timeout) must not cancel the load
            await asyncio.shield(self._loading)
            return self._index
        try:
            await asyncio.wait_for(asyncio.shield(self._loading), self.reload_wait)
        except asyncio.TimeoutError:
            self.log.info("Catalogue %s still loading; answering from the previous version", self.path)
        return self._index

    async def _load(self):
        try:
            before = self._index
            index = await asyncio.to_thread(self.load)
            if index is not before:
                self.log.info("Loaded %d datasets from %s", len(index.datasets), self.path)
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
