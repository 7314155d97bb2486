"""The dataset catalogue's model: the record, a page of results, the backend base class.

A backend answers two questions for a user, identified by the set of their
JupyterHub groups: *which datasets may I see, page by page, matching this
text?* (``search``) and *may I use this dataset?* (``get``). Access is granted
when a dataset is public or one of its ``access_groups`` is one of the user's
groups; ``see_all`` bypasses that for administrators when the deployment
allows it.

Backends are picked with ``c.FacilitySpawner.catalog_class``: a name
registered in the ``daas.catalogs`` entry-point group (``"yaml"``:
:class:`hub_ext.catalogs.yaml_catalog.YamlCatalog`, ``"scicat"``:
:class:`hub_ext.catalogs.scicat.SciCatCatalog`; a facility's package can add
its own), or an import string ``"package.module.ClassName"``.
"""

from __future__ import annotations

import os
import re
import functools
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from importlib import import_module
from importlib.metadata import entry_points

from traitlets import Integer
from traitlets.config import LoggingConfigurable

#: The access token of the user a catalogue request is made for, when the hub has
#: one (OpenID Connect login). Backends that query on the user's behalf (a SciCat
#: enforcing its own ACLs) read it; set by the spawner and the search service.
user_access_token: ContextVar[str | None] = ContextVar("daas_user_access_token", default=None)

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

    #: Fields the dataset picker shows: never the storage path or the access groups.
    PICKER_FIELDS = ("pid", "title", "facility", "instrument", "proposal", "public", "techniques",
                     "size_bytes", "description")

    def picker_dict(self) -> dict:
        """What the options form's picker needs, and nothing about storage or access lists."""
        d = {k: getattr(self, k) for k in self.PICKER_FIELDS}
        d["techniques"] = list(self.techniques)
        d["slug"] = self.slug
        env = self.extra.get("environment")
        d["environment"] = env if isinstance(env, str) else ""
        return d

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
    #: Facilities whose backend could not answer (a federated search shows the others).
    unavailable: list = field(default_factory=list)
    #: Positions in the backend's own numbering (``offset`` counts these): records it
    #: skipped (malformed) still take a position. None: the same as ``total``.
    source_total: int | None = None

    def to_dict(self):
        return self._dict([d.to_dict() for d in self.items])

    def picker_dict(self) -> dict:
        """The page as the picker gets it (:meth:`Dataset.picker_dict` items)."""
        # not through to_dict(): dataclasses.asdict of every item was the search service's largest cost
        return self._dict([item.picker_dict() for item in self.items])

    def _dict(self, items: list) -> dict:
        return {
            "total": self.total,
            "offset": self.offset,
            "limit": self.limit,
            "items": items,
            "unavailable": list(self.unavailable),
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


#: The entry-point group through which catalogue backends are found by name.
CATALOG_ENTRY_POINTS = "daas.catalogs"


def catalog_class_from_name(name: str | type) -> type[Catalog]:
    """Resolve a ``daas.catalogs`` entry-point name (``"yaml"``, ``"scicat"``, a
    plug-in's) or ``"pkg.module.Class"`` to a :class:`Catalog` subclass."""
    cls = name if isinstance(name, type) else _catalog_class_named(name)
    if not (isinstance(cls, type) and issubclass(cls, Catalog)):
        raise ValueError(f"catalog_class {name!r} is not a hub_ext.catalogs.Catalog subclass")
    return cls


@functools.lru_cache(maxsize=64)
def _catalog_class_named(name: str) -> type:
    # Scanning the installed distributions' entry points takes tens of
    # milliseconds: once per name, not once per request.
    found = [ep for ep in entry_points(group=CATALOG_ENTRY_POINTS) if ep.name == name]
    if found:
        cls = found[0].load()
    else:
        module, _, attr = str(name).rpartition(".")
        if not module:
            known = sorted({ep.name for ep in entry_points(group=CATALOG_ENTRY_POINTS)})
            raise ValueError(f"catalog_class {name!r}: use one of {known} or 'module.Class'")
        cls = getattr(import_module(module), attr)
    return cls
