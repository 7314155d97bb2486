"""SciCat catalogue backend: datasets from a SciCat server's REST API.

The hub queries SciCat with its own functional-account token and asks only
for what the user may see (published, or owner/access group among the user's
JupyterHub groups); every record that comes back is checked again here with
:meth:`Dataset.visible_to`, so a server whose filter leaks cannot expose a
dataset.

API used (SciCat backend, ``/api/v3`` routes)::

    GET {url}/datasets?filter={"where": ..., "limits": {"skip", "limit", "order"}, "skip", "limit", "order"}
    GET {url}/datasets/count?filter={"where": ...}&where={...}
    GET {url}/datasets/{url-encoded pid}

Paging is sent both as ``limits`` (the current NestJS backend) and as
LoopBack's top-level ``skip``/``limit``/``order`` (the older LoopBack
backend); the count both as ``filter`` (current) and ``where`` (older). Each
server reads its own form and ignores the other.

Configuration example::

    c.FacilitySpawner.catalog_class = "scicat"
    c.SciCatCatalog.url = "https://scicat.example.org/api/v3"
    c.SciCatCatalog.facility = "EuXFEL"
    c.SciCatCatalog.path_map = {"/gpfs/exfel/exp": "/data/exfel"}
    # token: export SCICAT_TOKEN=... in the hub's environment
"""

import asyncio
import json
import os
import re
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Dict, Float, Integer, List, Unicode, default, observe, validate

from ..files import relative_below
from .base import Catalog, CatalogError, Dataset, Page, user_access_token, valid_pid
from .cache import TTLCache

UNREACHABLE = (
    "The dataset catalogue (SciCat) is unreachable right now; please try again in a few minutes."
)

_REGEX_SPECIAL = re.compile(r"[\\^$.|?*+()\[\]{}/-]")


def regex_escape(text):
    """Escape ``text`` so that it matches literally in a JavaScript/PCRE regex.

    Only the characters that are special in those dialects are escaped: an
    escaped letter or digit would mean something else there (``\\d``, ``\\1``).
    """
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


class SciCatCatalog(Catalog):
    """Datasets from a SciCat server (``c.FacilitySpawner.catalog_class = "scicat"``).

    Field mapping (SciCat -> :class:`Dataset`): ``pid`` -> pid, ``datasetName``
    -> title, ``sourceFolder`` -> path (through :attr:`path_map`),
    ``ownerGroup`` + ``accessGroups`` -> access_groups, ``isPublished`` ->
    public, ``proposalId`` -> proposal, ``creationLocation`` -> instrument
    (and facility unless :attr:`facility` is set), ``size`` -> size_bytes,
    ``techniques[].name`` -> techniques, ``description`` -> description.
    """

    url = Unicode(
        "",
        help="""Base URL of SciCat's REST API, including the API prefix,
        e.g. ``https://scicat.example.org/api/v3``.""",
    ).tag(config=True)

    token = Unicode(
        help="""Access token of the hub's SciCat functional account.

        Defaults to the environment variable ``SCICAT_TOKEN`` so that the
        secret need not be written into jupyterhub_config.py.""",
    ).tag(config=True)

    @default("token")
    def _token_default(self):
        return os.environ.get("SCICAT_TOKEN", "")

    max_connections = Integer(
        50, help="Most requests to this SciCat in flight at once (more wait in a queue)."
    ).tag(config=True)

    on_behalf_of_user = Bool(
        False,
        help="""Query SciCat with the logged-in user's own access token (from the
        OpenID Connect login, kept in auth_state) instead of the hub's, so SciCat
        applies its own ACLs as well. Without a user token (other
        authenticators) the hub's :attr:`token` is used. Answers are cached per
        token.""",
    ).tag(config=True)

    auth_header = Unicode(
        "Authorization",
        help="HTTP header that carries the token.",
    ).tag(config=True)

    auth_scheme = Unicode(
        "Bearer",
        help="""Scheme written before the token in :attr:`auth_header`
        (``Authorization: Bearer <token>``); empty to send the bare token.""",
    ).tag(config=True)

    timeout = Float(
        10.0,
        help="""Seconds to wait for SciCat to connect and answer one request.
        Past it, the form says the catalogue is unreachable.""",
    ).tag(config=True)

    verify_tls = Bool(
        True,
        help="Check SciCat's TLS certificate. Turn off only for a test server.",
    ).tag(config=True)

    ca_certs = Unicode(
        "",
        help="PEM file of certificate authorities to trust for SciCat (default: the system's).",
    ).tag(config=True)

    cache_ttl = Float(
        30.0,
        help="""Seconds a search page or dataset answer is reused before SciCat
        is asked again (0 disables the cache). Pages are cached per user group
        set, query, facility and page, so a user never gets another user's
        page; access revoked in SciCat takes effect within this delay.""",
    ).tag(config=True)

    cache_size = Integer(
        1024,
        help="Most answers kept in the cache; the least recently used go first.",
    ).tag(config=True)

    path_map = Dict(
        {},
        help="""Rewrite SciCat ``sourceFolder`` prefixes into the paths where the
        notebook servers see the data, e.g.
        ``{"/gpfs/exfel/exp": "/data/exfel"}``. The longest matching prefix
        wins (whole path components only). When the map is not empty, a
        dataset under none of its prefixes cannot be mounted and is left out
        (logged). Empty: ``sourceFolder`` is used as it is.""",
    ).tag(config=True)

    facility = Unicode(
        "",
        help="""Facility name for every dataset of this SciCat (one SciCat per
        facility is common). Empty: taken from ``creationLocation``, whose
        documented form is ``/facility/instrument`` (first path component).""",
    ).tag(config=True)

    facility_names = List(
        Unicode(),
        help="""Facility names offered by the form's facility filter. Default:
        :attr:`facility` when set, else none (SciCat has no cheap way to list
        them).""",
    ).tag(config=True)

    order = Unicode(
        "creationTime:desc",
        help="""Sort order of search results, as SciCat's ``field:asc|desc``.""",
    ).tag(config=True)

    @validate("order")
    def _check_order(self, proposal):
        field_, _, direction = proposal["value"].partition(":")
        if not field_ or direction not in ("asc", "desc"):
            raise ValueError(f"order must look like 'field:asc' or 'field:desc', not {proposal['value']!r}")
        return proposal["value"]

    @validate("url")
    def _check_url(self, proposal):
        return proposal["value"].rstrip("/")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache = TTLCache(self.cache_ttl, self.cache_size)

    @observe("cache_ttl", "cache_size")
    def _resize_cache(self, change):
        if hasattr(self, "_cache"):
            self._cache.ttl, self._cache.size = self.cache_ttl, self.cache_size
            self._cache.clear()

    # ---- mapping ---------------------------------------------------------

    def map_path(self, source_folder):
        """The mount path of a SciCat ``sourceFolder`` (ValueError if outside :attr:`path_map`)."""
        if not isinstance(source_folder, str) or not source_folder.startswith("/"):
            raise ValueError(f"sourceFolder must be an absolute path, not {source_folder!r}")
        path = os.path.normpath(source_folder)
        if not self.path_map:
            return path
        for prefix in sorted(self.path_map, key=len, reverse=True):
            rest = relative_below(path, prefix)
            if rest is not None:
                target = os.path.normpath(self.path_map[prefix])
                return os.path.join(target, rest) if rest else target
        raise ValueError(f"sourceFolder {path!r} is under no prefix of c.SciCatCatalog.path_map")

    def split_location(self, location):
        """``(facility, instrument)`` from a ``creationLocation`` like ``/EuXFEL/SPB/SFX``."""
        parts = [p for p in str(location or "").split("/") if p]
        if self.facility:
            if parts and parts[0] == self.facility:
                parts = parts[1:]
            return self.facility, "/".join(parts)
        if not parts:
            return "", ""
        return parts[0], "/".join(parts[1:])

    def record_to_dataset(self, rec):
        """A :class:`Dataset` from one SciCat dataset record (ValueError if unusable)."""
        if not isinstance(rec, dict):
            raise ValueError(f"a SciCat dataset must be a JSON object, not {type(rec).__name__}")
        groups = []
        owner = rec.get("ownerGroup")
        if owner:
            groups.append(owner)
        access = rec.get("accessGroups") or []
        if not isinstance(access, list):
            raise ValueError(f"dataset {rec.get('pid')!r}: accessGroups must be a list")
        groups += [g for g in access if g not in groups]
        facility, instrument = self.split_location(rec.get("creationLocation"))
        proposal = rec.get("proposalId")
        if not proposal and isinstance(rec.get("proposalIds"), list) and rec["proposalIds"]:
            proposal = rec["proposalIds"][0]  # SciCat v4 records carry a list
        size = rec.get("size")
        if isinstance(size, float) and size.is_integer():
            size = int(size)
        techniques = []
        for t in rec.get("techniques") or []:
            name = t.get("name") if isinstance(t, dict) else t
            if isinstance(name, str) and name:
                techniques.append(name)
        return Dataset.from_dict(
            {
                "pid": rec.get("pid"),
                "title": rec.get("datasetName") or rec.get("pid"),
                "facility": facility,
                "instrument": instrument,
                "proposal": proposal or "",
                "path": self.map_path(rec.get("sourceFolder")),
                "access_groups": groups,
                "public": rec.get("isPublished") is True,
                "techniques": techniques,
                "size_bytes": size,
                "description": rec.get("description") or "",
                "source_folder": rec.get("sourceFolder"),
            }
        )

    # ---- queries ---------------------------------------------------------

    def build_where(self, groups, query="", facility="", see_all=False):
        """SciCat ``where`` for a search, or None when nothing can match.

        Clauses are nested under ``$and`` because the SciCat backend writes its
        own access ``$or`` at the top level of ``where`` for non-admin accounts.
        """
        clauses = []
        if not see_all:
            groups = sorted(set(groups))
            access = [{"isPublished": True}]
            if groups:
                access += [{"ownerGroup": {"$in": groups}}, {"accessGroups": {"$in": groups}}]
            clauses.append({"$or": access})
        if facility:
            if self.facility:
                if facility != self.facility:
                    return None
            else:
                loc = "^/?" + regex_escape(facility) + "(/|$)"
                clauses.append({"creationLocation": {"$regex": loc}})
        for word in (query or "").split():
            pattern = {"$regex": regex_escape(word), "$options": "i"}
            fields = ("pid", "datasetName", "proposalId", "creationLocation")
            clauses.append({"$or": [{f: dict(pattern)} for f in fields]})
        return {"$and": clauses} if clauses else {}

    def _acting_token(self):
        """The token requests carry: the user's own when :attr:`on_behalf_of_user`, else the hub's."""
        if self.on_behalf_of_user:
            token = user_access_token.get()
            if token:
                return token
        return self.token

    def _client(self):
        # A client of its own: a SciCat that hangs holds only its own connection
        # slots, never those of the hub's other HTTP calls (nor another backend's).
        if getattr(self, "_http", None) is None:
            self._http = AsyncHTTPClient(force_instance=True, max_clients=self.max_connections)
        return self._http

    def _cache_who(self):
        # answers obtained with a user's token are that user's only
        return hash(self._acting_token()) if self.on_behalf_of_user else None

    def _auth_headers(self):
        token = self._acting_token()
        value = f"{self.auth_scheme} {token}" if self.auth_scheme else token
        return {self.auth_header: value, "Accept": "application/json"}

    async def _fetch_json(self, path, params=None, missing_ok=False):
        """``(status, parsed JSON or None)``; CatalogError when SciCat cannot answer.

        With ``missing_ok``, 403 and 404 answer None (a record the account may
        not read looks like one that does not exist).
        """
        if not self.url:
            raise CatalogError("No SciCat server configured: set c.SciCatCatalog.url")
        url = self.url + path + ("?" + urlencode(params) if params else "")
        request = HTTPRequest(
            url,
            headers=self._auth_headers(),
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
            validate_cert=self.verify_tls,
            ca_certs=self.ca_certs or None,
        )
        try:
            # shielded: a caller's own deadline (the federated catalogue's timeout) cancels
            # only the wait; tornado then ends the request at its own timeout without
            # logging "Exception after Future was cancelled"
            response = await asyncio.shield(self._client().fetch(request, raise_error=False))
        except (HTTPClientError, OSError, asyncio.TimeoutError) as e:
            self.log.error("SciCat request %s failed: %s", path, e)
            raise CatalogError(UNREACHABLE) from e
        status = response.code
        if status == 401:
            self.log.error("SciCat rejected the hub's token (401) for %s", path)
            raise CatalogError(
                UNREACHABLE + " (SciCat refused the hub's credentials; administrators: check c.SciCatCatalog.token)"
            )
        if missing_ok and status in (403, 404):
            return status, None
        if status != 200:
            body = (response.body or b"")[:500]
            self.log.error("SciCat answered %s for %s: %r", status, path, body)
            raise CatalogError(UNREACHABLE)
        if not response.body or not response.body.strip():
            return status, None
        try:
            return status, json.loads(response.body)
        except ValueError as e:
            self.log.error("SciCat answered invalid JSON for %s: %s", path, e)
            raise CatalogError(UNREACHABLE) from e

    def _to_datasets(self, records, groups, see_all, facility=""):
        """Convert and re-check records; returns ``(datasets, dropped)``."""
        items, dropped = [], 0
        for rec in records:
            try:
                d = self.record_to_dataset(rec)
            except ValueError as e:
                self.log.warning("Skipping SciCat record: %s", e)
                dropped += 1
                continue
            if not d.visible_to(groups, see_all):
                self.log.warning("SciCat returned %s, which these groups may not see: dropped", d.pid)
                dropped += 1
                continue
            if facility and d.facility != facility:
                dropped += 1
                continue
            items.append(d)
        return items, dropped

    async def search(self, groups, query="", facility="", offset=0, limit=20, see_all=False):
        offset, limit = self._clamp(offset, limit)
        groups = frozenset(groups)
        query = " ".join((query or "").split())
        facility = facility or ""
        key = ("search", self._cache_who(), None if see_all else tuple(sorted(groups)), query, facility, offset, limit)
        hit, page = self._cache.get(key)
        if hit:
            return page
        where = self.build_where(groups, query, facility, see_all)
        if where is None:
            return Page(total=0, offset=offset, limit=limit, items=[])
        field_, _, direction = self.order.partition(":")
        filt = {
            "where": where,
            "limits": {"skip": offset, "limit": limit, "order": self.order},
            "skip": offset,
            "limit": limit,
            "order": f"{field_} {direction.upper()}",
        }
        compact = dict(separators=(",", ":"))
        where_json = json.dumps(where, **compact)
        (_, records), (_, counted) = await asyncio.gather(
            self._fetch_json("/datasets", {"filter": json.dumps(filt, **compact)}),
            self._fetch_json(
                "/datasets/count",
                {"filter": json.dumps({"where": where}, **compact), "where": where_json},
            ),
        )
        if not isinstance(records, list):
            self.log.error("SciCat /datasets answered %s instead of a list", type(records).__name__)
            raise CatalogError(UNREACHABLE)
        count = counted.get("count") if isinstance(counted, dict) else None
        if not isinstance(count, int) or isinstance(count, bool):
            self.log.error("SciCat /datasets/count answered %r", counted)
            raise CatalogError(UNREACHABLE)
        items, dropped = self._to_datasets(records, groups, see_all, facility)
        total = max(count - dropped, offset + len(items))
        page = Page(total=total, offset=offset, limit=limit, items=items, source_total=count)
        self._cache.put(key, page)
        return page

    async def get(self, pid, groups, see_all=False):
        if not valid_pid(pid):
            return None
        key = ("get", self._cache_who(), pid)
        hit, d = self._cache.get(key)
        if not hit:
            _, rec = await self._fetch_json("/datasets/" + quote(pid, safe=""), missing_ok=True)
            d = None
            if rec is not None:
                if not isinstance(rec, dict) or rec.get("pid") != pid:
                    self.log.warning("SciCat answered a different record for %s: ignored", pid)
                else:
                    try:
                        d = self.record_to_dataset(rec)
                    except ValueError as e:
                        self.log.warning("Skipping SciCat record: %s", e)
            # visibility depends on the caller, so the cache holds the record itself
            self._cache.put(key, d)
        return d if d is not None and d.visible_to(groups, see_all) else None

    async def facilities(self):
        if self.facility_names:
            return list(self.facility_names)
        return [self.facility] if self.facility else []

    def clear_cache(self):
        """Forget every cached answer (the next calls ask SciCat again)."""
        self._cache.clear()
