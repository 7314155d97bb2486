"""A small SciCat server over a real socket, for tests.

It speaks the subset of SciCat's datasets REST API (``/api/v3`` routes) that
:class:`hub_ext.catalogs.scicat.SciCatCatalog` uses, the way the SciCat backend reads
it:

- ``GET /api/v3/datasets?filter=<json>``: ``where`` (field equality, with
  array fields matching any element; ``$or``/``or``, ``$and``/``and``,
  ``$in``/``inq``, ``$nin``/``nin``, ``$regex``/``like`` with ``$options``,
  ``ilike``, ``$eq``, ``$ne``, ``$gt``/``gt`` ..., ``$exists``; dotted keys
  like ``techniques.name``), paging from ``limits`` ``{skip, limit, order:
  "field:asc|desc"}`` or else LoopBack's top-level ``skip``/``limit``/
  ``order: "field ASC|DESC"``; default limit 100 as in the backend.
- ``GET /api/v3/datasets/count?filter={"where": ...}`` (or ``?where=...``)
  -> ``{"count": n}``.
- ``GET /api/v3/datasets/<url-encoded pid>`` -> the record, or 404.
- Every request needs ``Authorization: Bearer <token>``, else 401.

Switches for failure tests: :attr:`FakeSciCat.delay` (slow answers),
:attr:`~FakeSciCat.fail_status` (e.g. 500), :attr:`~FakeSciCat.bad_json`,
:attr:`~FakeSciCat.inject` (records added to every list answer, whatever the
filter: a server whose access filter leaks) and :meth:`~FakeSciCat.stop`
(unreachable). :attr:`~FakeSciCat.requests` logs what was asked.

Usage::

    with fake_scicat([scicat_dataset("p1", groups=["g1"])]) as server:
        c.SciCatCatalog.url = server.url
        c.SciCatCatalog.token = server.token
"""

import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

DEFAULT_TOKEN = "fake-scicat-functional-account-token"


def scicat_dataset(
    pid,
    title=None,
    *,
    groups=(),
    owner_group=None,
    public=False,
    source_folder=None,
    proposal="",
    location="/EuXFEL/SPB/SFX",
    size=1024,
    techniques=(),
    description="",
    creation_time="2026-01-01T00:00:00.000Z",
    **extra,
):
    """A SciCat raw-dataset record as the API returns it.

    ``owner_group`` defaults to the first of ``groups``; the rest become
    ``accessGroups``.
    """
    groups = list(groups)
    if owner_group is None:
        owner_group = groups.pop(0) if groups else "ingestor"
    rec = {
        "pid": pid,
        "datasetName": title if title is not None else f"dataset {pid}",
        "type": "raw",
        "ownerGroup": owner_group,
        "accessGroups": groups,
        "isPublished": public,
        "sourceFolder": source_folder or "/gpfs/exfel/exp/" + re.sub(r"[^A-Za-z0-9]+", "_", pid),
        "proposalId": proposal,
        "creationLocation": location,
        "size": size,
        "techniques": [{"pid": f"tech/{i}", "name": t} for i, t in enumerate(techniques)],
        "description": description,
        "creationTime": creation_time,
        "owner": "Data Owner",
        "contactEmail": "owner@example.org",
    }
    rec.update(extra)
    return rec


class FilterError(ValueError):
    """A filter the fake (and SciCat) cannot execute: answered with 400."""


_OPS = {
    "or": "$or",
    "and": "$and",
    "inq": "$in",
    "nin": "$nin",
    "like": "$regex",
    "gt": "$gt",
    "gte": "$gte",
    "lt": "$lt",
    "lte": "$lte",
    "neq": "$ne",
}


def _values(record, dotted):
    """Values at a dotted path; lists along the way fan out, as in MongoDB."""
    current = [record]
    for part in dotted.split("."):
        nxt = []
        for value in current:
            if isinstance(value, dict) and part in value:
                v = value[part]
                nxt.extend(v if isinstance(v, list) else [v])
                if isinstance(v, list):
                    nxt.append(v)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and part in item:
                        v = item[part]
                        nxt.extend(v if isinstance(v, list) else [v])
        current = nxt
    return current


def _regex(spec, options=""):
    flags = re.IGNORECASE if "i" in (options or "") else 0
    if not isinstance(spec, str):
        raise FilterError(f"$regex needs a string, not {spec!r}")
    try:
        return re.compile(spec, flags)
    except re.error as e:
        raise FilterError(f"invalid regex {spec!r}: {e}") from None


def _compare(values, op, arg):
    def ordered(test):
        out = False
        for v in values:
            try:
                out = out or test(v)
            except TypeError:
                pass
        return out

    if op == "$eq":
        return arg in values
    if op == "$ne":
        return arg not in values
    if op == "$in":
        if not isinstance(arg, list):
            raise FilterError("$in needs an array")
        return any(a in values for a in arg)
    if op == "$nin":
        if not isinstance(arg, list):
            raise FilterError("$nin needs an array")
        return not any(a in values for a in arg)
    if op == "$gt":
        return ordered(lambda v: v > arg)
    if op == "$gte":
        return ordered(lambda v: v >= arg)
    if op == "$lt":
        return ordered(lambda v: v < arg)
    if op == "$lte":
        return ordered(lambda v: v <= arg)
    if op == "$exists":
        return bool(values) == bool(arg)
    raise FilterError(f"unknown operator {op!r}")


def _field_matches(record, key, cond):
    values = _values(record, key)
    if isinstance(cond, dict) and cond and all(k.startswith("$") or k in _OPS or k == "ilike" for k in cond):
        options = cond.get("$options", "")
        for op, arg in cond.items():
            if op == "$options":
                continue
            if op == "ilike":
                op, options = "$regex", "i"
            op = _OPS.get(op, op)
            if op == "$regex":
                pattern = _regex(arg, options)
                if not any(isinstance(v, str) and pattern.search(v) for v in values):
                    return False
            elif not _compare(values, op, arg):
                return False
        return True
    return cond in values


def matches(record, where):
    """True when ``record`` satisfies a SciCat/LoopBack ``where``."""
    if where is None:
        return True
    if not isinstance(where, dict):
        raise FilterError(f"where must be an object, not {where!r}")
    for key, cond in where.items():
        op = _OPS.get(key, key)
        if op in ("$or", "$and"):
            if not isinstance(cond, list):
                raise FilterError(f"{key} needs an array")
            results = [matches(record, sub) for sub in cond]
            if not (any(results) if op == "$or" else all(results)):
                return False
        elif key.startswith("$"):
            raise FilterError(f"unknown top-level operator {key!r}")
        elif not _field_matches(record, key, cond):
            return False
    return True


def _sort_key(value):
    # None sorts first, as MongoDB does with missing fields
    return (value is not None, value if value is not None else 0)


class FakeSciCat:
    """A SciCat datasets API on 127.0.0.1 (ephemeral port), served by a thread."""

    def __init__(self, datasets=(), token=DEFAULT_TOKEN, base_path="/api/v3"):
        self.token = token
        self.base_path = base_path.rstrip("/")
        self._lock = threading.Lock()
        self._datasets = []
        self.seed(datasets)
        #: seconds to wait before answering (timeout tests)
        self.delay = 0.0
        #: answer every request with this HTTP status (e.g. 500) when set
        self.fail_status = None
        #: answer 200 with a body that is not JSON
        self.bad_json = False
        #: records appended to every /datasets answer, ignoring the filter
        self.inject = []
        #: (path, query dict) of every request received, in order
        self.requests = []
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # ---- data --------------------------------------------------------------

    def seed(self, datasets):
        """Replace the datasets served (records as :func:`scicat_dataset` makes)."""
        with self._lock:
            self._datasets = [dict(d) for d in datasets]

    def add(self, record):
        with self._lock:
            self._datasets.append(dict(record))

    def remove(self, pid):
        with self._lock:
            self._datasets = [d for d in self._datasets if d.get("pid") != pid]

    def request_count(self, path_suffix=""):
        """How many requests hit a path ending with ``path_suffix``."""
        with self._lock:
            return sum(1 for path, _ in self.requests if path.endswith(path_suffix))

    # ---- lifecycle ---------------------------------------------------------

    @property
    def url(self):
        """Base URL of the API, to set as ``c.SciCatCatalog.url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.base_path}"

    def start(self):
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._stopping.clear()
        # a short poll interval keeps stop() (and each test's teardown) quick
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-scicat", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        """Stop serving and close the socket: the URL becomes unreachable."""
        if self._thread is None:
            return
        self._stopping.set()  # wakes handlers waiting out self.delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __iter__(self):
        # lets tests write `url, token = server`
        return iter((self.url, self.token))

    # ---- API ---------------------------------------------------------------

    def handle(self, path, query, headers):
        """``(status, body)`` for one GET; body is a JSON-able object or bytes."""
        with self._lock:
            self.requests.append((path, {k: v[-1] for k, v in query.items()}))
        if self.delay:
            self._stopping.wait(self.delay)
        if self.fail_status:
            return self.fail_status, {"statusCode": self.fail_status, "message": "Internal server error"}
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"statusCode": 401, "message": "Unauthorized"}
        if self.bad_json:
            return 200, b'[{"pid": "truncated'
        prefix = self.base_path + "/datasets"
        if path != prefix and not path.startswith(prefix + "/"):
            return 404, {"statusCode": 404, "message": f"Cannot GET {path}"}
        rest = path[len(prefix) :]
        try:
            if rest in ("", "/"):
                return 200, self._find(query)
            if rest == "/count":
                return 200, self._count(query)
            pid = unquote(rest[1:])
            with self._lock:
                found = [d for d in self._datasets if d.get("pid") == pid]
            if not found:
                return 404, {"statusCode": 404, "message": "Not Found"}
            return 200, found[0]
        except FilterError as e:
            return 400, {"statusCode": 400, "message": str(e)}

    def _json_param(self, query, name):
        if name not in query:
            return None
        try:
            return json.loads(query[name][-1])
        except ValueError as e:
            raise FilterError(f"{name} is not valid JSON: {e}") from None

    def _find(self, query):
        filt = self._json_param(query, "filter") or {}
        if not isinstance(filt, dict):
            raise FilterError("filter must be an object")
        limits = filt.get("limits")
        if isinstance(limits, dict):
            skip, limit, order = limits.get("skip", 0), limits.get("limit", 100), limits.get("order")
            if order:
                field_, _, direction = order.partition(":")
                order = (field_, direction.lower() == "desc")
        else:
            skip, limit, order = filt.get("skip", 0), filt.get("limit", 100), filt.get("order")
            if isinstance(order, list):
                order = order[0] if order else None
            if order:
                field_, _, direction = order.partition(" ")
                order = (field_, direction.upper() == "DESC")
        if not (isinstance(skip, int) and isinstance(limit, int)) or skip < 0 or limit < 0:
            raise FilterError("skip and limit must be non-negative integers")
        with self._lock:
            rows = [d for d in self._datasets if matches(d, filt.get("where"))]
        if order:
            field_, descending = order
            try:
                rows.sort(key=lambda d: _sort_key(d.get(field_)), reverse=descending)
            except TypeError:
                rows.sort(key=lambda d: str(d.get(field_)), reverse=descending)
        return rows[skip : skip + limit] + [dict(r) for r in self.inject]

    def _count(self, query):
        filt = self._json_param(query, "filter")
        where = filt.get("where") if isinstance(filt, dict) else self._json_param(query, "where")
        with self._lock:
            return {"count": sum(1 for d in self._datasets if matches(d, where))}


class _Handler(BaseHTTPRequestHandler):
    fake = None  # set on the per-server subclass
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        parts = urlsplit(self.path)
        status, body = self.fake.handle(parts.path, parse_qs(parts.query), self.headers)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def log_message(self, format, *args):
        pass  # keep test output clean


@contextmanager
def fake_scicat(datasets=(), **kwargs):
    """Start a :class:`FakeSciCat` serving ``datasets``; stopped on exit."""
    server = FakeSciCat(datasets, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def scicat_server():
    """A running :class:`FakeSciCat` with no datasets (seed with ``.seed``)."""
    with fake_scicat() as server:
        yield server
