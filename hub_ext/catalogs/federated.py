"""The federated catalogue: several facilities' catalogues behind one picker.

Each backend (a YAML file, a SciCat, any ``daas.catalogs`` plug-in) is
labelled with its facility and queried concurrently, each under its own
timeout; answers are cached briefly. A backend that is down or slow costs
at most its timeout: the others are shown, with the unavailable facility
named in :attr:`Page.unavailable`.

Identifiers are namespaced: ``<backend name>:<the backend's pid>``. A dataset
is resolved and access-checked by the backend that owns it, at form time and
again at start; if that backend cannot answer, :class:`BackendUnavailable`
says which facility, and nothing starts.

Results are ordered backend by backend (in configuration order), each in its
backend's own stable order, so page 2 follows page 1 with no gaps or repeats:
a page's window is cut from each backend's totals.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from traitlets import Dict, Float, Integer, List, validate

from .base import Catalog, CatalogError, Dataset, Page, catalog_class_from_name, valid_pid
from .cache import TTLCache

#: A backend name is the namespace of its identifiers: no ``:``.
BACKEND_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class BackendUnavailable(CatalogError):
    """One facility's catalogue did not answer in time; the message names it."""

    def __init__(self, facility: str, reason: str = ""):
        super().__init__(
            f"The {facility} catalogue is unavailable right now{': ' + reason if reason else ''}; "
            "try again in a few minutes, or choose a dataset of another facility."
        )
        self.facility = facility


@dataclass
class Backend:
    """A configured backend: its namespace, facility label, catalogue and timeout."""

    name: str
    facility: str
    catalog: Catalog
    timeout: float


class FederatedCatalog(Catalog):
    """Datasets of several facilities' catalogues (``c.FacilitySpawner.catalog_class = "federated"``).

    Example::

        c.FacilitySpawner.catalog_class = "federated"
        c.FederatedCatalog.backends = [
            {"name": "xfel", "facility": "EuXFEL", "class": "scicat",
             "config": {"url": "https://scicat.xfel.eu/api/v3", "path_map": {"/gpfs/exfel/exp": "/data/exfel"}}},
            {"name": "petra", "facility": "PETRA III", "class": "yaml",
             "config": {"path": "/etc/daas/petra.yaml"}, "timeout": 2},
        ]
    """

    backends = List(
        Dict(),
        help="""The facility catalogues, in display order. Each entry:

        ``name`` (namespace of its identifiers: lower-case letters, digits,
        ``-``/``_``), ``facility`` (label shown and filtered on; every dataset of
        the backend carries it), ``class`` (a ``daas.catalogs`` entry-point name
        such as ``"yaml"`` or ``"scicat"``, or ``"pkg.module.Class"``),
        ``config`` (trait values of that class, e.g. ``{"path": ...}`` or
        ``{"url": ..., "token": ...}``) and optionally ``timeout`` (seconds,
        default :attr:`timeout`).
        """,
    ).tag(config=True)

    timeout = Float(
        3.0,
        help="""Seconds a backend may take to answer one request before the
        picker goes on without it (and names its facility as unavailable).""",
    ).tag(config=True)

    cache_ttl = Float(
        10.0,
        help="""Seconds a backend's answer is reused for the same groups, query and
        page; access revoked in a backend takes effect within this delay. 0: no cache.""",
    ).tag(config=True)

    down_retry = Float(
        10.0,
        help="""Seconds a backend that failed or timed out is left out of searches
        before it is asked again (the picker names it unavailable meanwhile). That
        question is asked in the background, so no search waits for a facility
        known to be down; once it answers, the next searches include it again.
        Resolving a dataset at start always asks it. 0: always ask.""",
    ).tag(config=True)

    cache_size = Integer(2048, help="Most answers kept in the cache (least recently used go first).").tag(config=True)

    @validate("backends")
    def _check_backends(self, proposal):
        self._parse_backends(proposal["value"], build=False)
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache = TTLCache(self.cache_ttl, self.cache_size)
        self._backends: list[Backend] | None = None
        self._down_until: dict[str, float] = {}
        self._probes: dict[str, asyncio.Future] = {}

    # -- configuration ---------------------------------------------------------------

    def _parse_backends(self, entries: list[dict], build: bool = True) -> list[Backend]:
        parsed, names = [], set()
        for i, entry in enumerate(entries):
            where = f"c.FederatedCatalog.backends #{i + 1}"
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: expected a mapping, not {entry!r}")
            unknown = set(entry) - {"name", "facility", "class", "config", "timeout"}
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
            name, facility = entry.get("name"), entry.get("facility")
            if not isinstance(name, str) or not BACKEND_NAME.match(name):
                raise ValueError(f"{where}: 'name' must be lower-case letters, digits, '-' or '_', not {name!r}")
            if name in names:
                raise ValueError(f"{where}: backend name {name!r} appears twice")
            names.add(name)
            if not isinstance(facility, str) or not facility.strip():
                raise ValueError(f"{where}: 'facility' (the label users see) is required")
            timeout = entry.get("timeout", self.timeout)
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
                raise ValueError(f"{where}: 'timeout' must be a positive number of seconds")
            config = entry.get("config") or {}
            if not isinstance(config, dict):
                raise ValueError(f"{where}: 'config' must be a mapping of trait values")
            cls = catalog_class_from_name(entry.get("class", "yaml"))
            if cls is type(self):
                raise ValueError(f"{where}: a federated catalogue cannot contain another one")
            if "timeout" not in config and "timeout" in cls.class_trait_names():
                # the backend's own requests give up when the federation stops waiting
                config = {**config, "timeout": float(timeout)}
            catalog = cls(log=self.log, **config) if build else None
            parsed.append(Backend(name, facility.strip(), catalog, float(timeout)))
        return parsed

    @property
    def members(self) -> list[Backend]:
        """The backends, built on first use."""
        if self._backends is None:
            self._backends = self._parse_backends(self.backends)
        return self._backends

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.members if b.name == name), None)

    # -- namespacing ---------------------------------------------------------------

    @staticmethod
    def split_pid(pid: str) -> tuple[str, str]:
        """``("xfel", "p2120:r29")`` from ``"xfel:p2120:r29"``; ``("", "")`` if not namespaced."""
        name, sep, inner = pid.partition(":")
        return (name, inner) if sep and inner else ("", "")

    def _label(self, backend: Backend, d: Any) -> Dataset | None:
        """The backend's record in the federation: namespaced pid, facility label; None if malformed."""
        if not isinstance(d, Dataset) or not valid_pid(d.pid):
            self.log.warning("Backend %s returned a malformed record, skipped: %.200r", backend.name, d)
            return None
        pid = f"{backend.name}:{d.pid}"
        if not valid_pid(pid):
            self.log.warning("Backend %s: identifier %r too long to namespace, skipped", backend.name, d.pid)
            return None
        return replace(d, pid=pid, facility=backend.facility, extra={**d.extra, "source_pid": d.pid})

    # -- calling a backend ------------------------------------------------------------

    async def _call(self, backend: Backend, key: tuple, make_call) -> Any:
        """The backend's answer, from the cache or within its timeout; BackendUnavailable otherwise."""
        key = (backend.name,) + key
        hit, value = self._cache.get(key)
        if hit:
            return value
        down_until = self._down_until.get(backend.name)
        if down_until is not None:
            if time.monotonic() >= down_until and backend.name not in self._probes:
                # Whether it is back is asked in the background: no search waits for a
                # backend known to be down; the first answer after the probe shows it again.
                probe = asyncio.ensure_future(self._probe(backend, key, make_call))
                self._probes[backend.name] = probe
                probe.add_done_callback(lambda _, name=backend.name: self._probes.pop(name, None))
            raise BackendUnavailable(backend.facility, "it failed moments ago")
        try:
            return await self._ask(backend, key, make_call)
        except BackendUnavailable:
            if self.down_retry > 0:
                self._down_until[backend.name] = time.monotonic() + self.down_retry
            raise

    async def _probe(self, backend: Backend, key: tuple, make_call) -> None:
        """Ask a backend that was down; back in the searches if it answers, left out ``down_retry`` more if not."""
        try:
            await self._ask(backend, key, make_call)
        except BackendUnavailable:
            self._down_until[backend.name] = time.monotonic() + self.down_retry
        else:
            self._down_until.pop(backend.name, None)

    async def _ask(self, backend: Backend, key: tuple, make_call) -> Any:
        try:
            value = await asyncio.wait_for(make_call(), backend.timeout)
        except asyncio.TimeoutError:
            self.log.error("Catalogue %s (%s) did not answer within %.1f s", backend.name, backend.facility, backend.timeout)
            raise BackendUnavailable(backend.facility, "no answer in time") from None
        except CatalogError as e:
            self.log.error("Catalogue %s (%s) failed: %s", backend.name, backend.facility, e)
            raise BackendUnavailable(backend.facility) from e
        except Exception as e:  # a plug-in's bug must not break the other facilities
            self.log.exception("Catalogue %s (%s) raised", backend.name, backend.facility)
            raise BackendUnavailable(backend.facility) from e
        self._cache.put(key, value)
        return value

    async def _search_one(self, backend, groups, query, offset, limit, see_all) -> Page:
        gkey = None if see_all else tuple(sorted(groups))
        page = await self._call(
            backend, ("search", gkey, query, offset, limit),
            lambda: backend.catalog.search(groups, query=query, offset=offset, limit=limit, see_all=see_all),
        )
        if not isinstance(page, Page) or not isinstance(page.total, int) or not isinstance(page.items, list):
            self.log.error("Catalogue %s answered %.200r instead of a Page", backend.name, page)
            raise BackendUnavailable(backend.facility, "malformed answer")
        return page

    # -- the Catalog API ----------------------------------------------------------------

    async def search(self, groups, query="", facility="", offset=0, limit=20, see_all=False):
        offset, limit = self._clamp(offset, limit)
        groups = frozenset(groups)
        query = " ".join((query or "").split())
        members = [b for b in self.members if not facility or b.facility == facility]

        # First round: every backend's [offset, offset + limit), as if the ones
        # before it were empty (right for the first); the totals that come back
        # place every other backend's window.
        answers = await asyncio.gather(
            *(self._search_one(b, groups, query, offset, limit, see_all) for b in members), return_exceptions=True
        )
        unavailable, pages = [], []
        for b, a in zip(members, answers):
            if isinstance(a, BackendUnavailable):
                unavailable.append(b.facility)
            elif isinstance(a, BaseException):
                raise a
            else:
                pages.append((b, a))

        # Each backend's window of the merged order [offset, offset + limit).
        windows, start = [], 0
        for b, page in pages:
            size = page.source_total if page.source_total is not None else page.total
            lo, hi = max(offset - start, 0), min(offset + limit - start, size)
            if hi > lo:
                windows.append((b, page, lo, hi))
            start += size
        total = start

        # The first answer covers [offset, offset + limit) of each backend's own
        # order: it holds the window when the backend starts the merged order
        # at or before offset (start == 0); other windows are asked for again.
        chosen, refetch = {}, []
        for b, page, lo, hi in windows:
            if lo == offset and page.offset == offset:
                chosen[b.name] = page.items[: hi - lo]
            else:
                refetch.append((b, lo, hi))
        if refetch:
            more = await asyncio.gather(
                *(self._search_one(b, groups, query, lo, hi - lo, see_all) for b, lo, hi in refetch),
                return_exceptions=True,
            )
            for (b, lo, hi), a in zip(refetch, more):
                if isinstance(a, BackendUnavailable):
                    unavailable.append(b.facility)
                elif isinstance(a, BaseException):
                    raise a
                else:
                    chosen[b.name] = a.items[: hi - lo]

        merged = []
        for b, _, _, _ in windows:
            for d in chosen.get(b.name, []):
                labelled = self._label(b, d)
                if labelled is not None:
                    merged.append(labelled)
        if len(unavailable) == len(members) and members:
            raise CatalogError(
                "No facility catalogue is reachable right now (" + ", ".join(unavailable) + "); try again in a few minutes."
            )
        return Page(total=total, offset=offset, limit=limit, items=merged[:limit], unavailable=unavailable)

    async def get(self, pid, groups, see_all=False):
        if not valid_pid(pid):
            return None
        name, inner = self.split_pid(pid)
        backend = self.backend(name)
        if backend is None or not valid_pid(inner):
            return None
        groups = frozenset(groups)
        # Never cached here: access is checked again by the owning backend each time.
        try:
            d = await asyncio.wait_for(backend.catalog.get(inner, groups, see_all=see_all), backend.timeout)
        except asyncio.TimeoutError:
            self.log.error("Catalogue %s (%s) did not resolve %s in time", backend.name, backend.facility, inner)
            raise BackendUnavailable(backend.facility, "no answer in time") from None
        except CatalogError as e:
            self.log.error("Catalogue %s (%s) failed to resolve %s: %s", backend.name, backend.facility, inner, e)
            raise BackendUnavailable(backend.facility) from e
        if d is None:
            return None
        if not d.visible_to(groups, see_all):  # the backend's own check, made again
            self.log.warning("Catalogue %s returned %s, which these groups may not see", backend.name, inner)
            return None
        return self._label(backend, d)

    async def facilities(self):
        seen = []
        for b in self.members:
            if b.facility not in seen:
                seen.append(b.facility)
        return seen

    def clear_cache(self):
        """Forget every cached answer."""
        self._cache.clear()
