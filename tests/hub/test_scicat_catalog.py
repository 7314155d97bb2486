"""SciCatCatalog against a SciCat fake that serves the datasets API over a real socket."""

import json
import logging
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

import pytest

from hub_ext.catalogs import CatalogError, catalog_class_from_name
from hub_ext.catalogs.scicat import SciCatCatalog, regex_escape
from tests.hub.fake_scicat import fake_scicat, scicat_dataset

PATH_MAP = {"/gpfs/exfel/exp": "/data/exfel"}


def base_records():
    return [
        scicat_dataset("xfel:p001:r0001", "Public lysozyme", groups=["p001"], public=True, proposal="001"),
        scicat_dataset("xfel:p002:r0001", "Owner only", groups=["p002"], proposal="002"),
        scicat_dataset("xfel:p003:r0001", "Shared with collab", owner_group="p003", groups=["collab"]),
        scicat_dataset("xfel:p004:r0001", "Hidden run", groups=["p004"], proposal="004"),
        scicat_dataset(
            "ess:p005:r0001", "LoKI reference", groups=["p005"], public=True, location="/ESS/LoKI"
        ),
    ]


@pytest.fixture
def server():
    with fake_scicat(base_records()) as s:
        yield s


@pytest.fixture
def log():
    logger = logging.getLogger("test.scicat")
    logger.setLevel(logging.DEBUG)
    return logger


def make_catalog(server, log, **kwargs):
    kwargs.setdefault("cache_ttl", 0)
    kwargs.setdefault("path_map", PATH_MAP)
    return SciCatCatalog(url=server.url, token=server.token, log=log, **kwargs)


def pids(page):
    return [d.pid for d in page.items]


def last_filter(server):
    """The filter JSON of the last list request the fake received."""
    for path, query in reversed(server.requests):
        if path.endswith("/datasets"):
            return json.loads(query["filter"])
    raise AssertionError("no /datasets request")


def raw_get(server, path, params=None, token=None):
    """A plain HTTP GET to the fake: (status, parsed body)."""
    url = server.url + path + ("?" + urlencode(params) if params else "")
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ---- mapping and access ------------------------------------------------------


async def test_fields_are_mapped(server, log):
    server.seed(
        [
            scicat_dataset(
                "20.500.12269/abc-123",
                "Lysozyme SFX",
                owner_group="p2120",
                groups=["p2120", "collab"],
                source_folder="/gpfs/exfel/exp/SPB/202601/p002120/raw/r0029/",
                proposal="2120",
                location="/EuXFEL/SPB/SFX",
                size=123456789,
                techniques=["serial crystallography"],
                description="run 29",
            )
        ]
    )
    cat = make_catalog(server, log)
    (d,) = (await cat.search({"collab"})).items
    assert d.pid == "20.500.12269/abc-123"
    assert d.title == "Lysozyme SFX"
    assert d.path == "/data/exfel/SPB/202601/p002120/raw/r0029"
    assert d.access_groups == ("p2120", "collab")
    assert d.public is False
    assert d.proposal == "2120"
    assert (d.facility, d.instrument) == ("EuXFEL", "SPB/SFX")
    assert d.size_bytes == 123456789
    assert d.techniques == ("serial crystallography",)
    assert d.description == "run 29"
    assert await cat.get("20.500.12269/abc-123", {"p2120"}) == d


async def test_fixed_facility_trait(server, log):
    cat = make_catalog(server, log, facility="EuXFEL")
    d = await cat.get("xfel:p001:r0001", set())
    assert (d.facility, d.instrument) == ("EuXFEL", "SPB/SFX")
    assert await cat.facilities() == ["EuXFEL"]
    before = server.request_count()
    assert (await cat.search(set(), facility="ESS")).total == 0
    assert server.request_count() == before  # another facility: SciCat is not asked


async def test_group_filtering(server, log):
    cat = make_catalog(server, log)
    public = {"xfel:p001:r0001", "ess:p005:r0001"}
    assert set(pids(await cat.search(set()))) == public
    assert set(pids(await cat.search({"p002"}))) == public | {"xfel:p002:r0001"}  # ownerGroup
    assert set(pids(await cat.search({"collab"}))) == public | {"xfel:p003:r0001"}  # accessGroups
    assert set(pids(await cat.search({"p003"}))) == public | {"xfel:p003:r0001"}
    page = await cat.search({"p002", "collab", "unrelated"})
    assert set(pids(page)) == public | {"xfel:p002:r0001", "xfel:p003:r0001"}
    assert page.total == 4
    # the groups travel in the query: SciCat filters, the client re-checks
    access = last_filter(server)["where"]["$and"][0]["$or"]
    assert {"ownerGroup": {"$in": ["collab", "p002", "unrelated"]}} in access
    assert {"accessGroups": {"$in": ["collab", "p002", "unrelated"]}} in access
    assert {"isPublished": True} in access


async def test_see_all(server, log):
    cat = make_catalog(server, log)
    page = await cat.search(set(), see_all=True)
    assert page.total == 5 and len(page.items) == 5
    assert await cat.get("xfel:p004:r0001", set(), see_all=True) is not None
    assert await cat.get("xfel:p004:r0001", set()) is None


async def test_leaky_server_filter_is_not_trusted(server, log, caplog):
    hidden = scicat_dataset("xfel:p009:r0001", "Secret", groups=["p009"])
    server.inject = [hidden]  # returned whatever the filter says
    cat = make_catalog(server, log)
    with caplog.at_level(logging.WARNING, logger="test.scicat"):
        page = await cat.search({"p002"})
    assert "xfel:p009:r0001" not in pids(page)
    assert set(pids(page)) == {"xfel:p001:r0001", "ess:p005:r0001", "xfel:p002:r0001"}
    assert "xfel:p009:r0001" in caplog.text
    assert "xfel:p009:r0001" in pids(await cat.search({"p009"}))


async def test_facility_filter_from_creation_location(server, log):
    cat = make_catalog(server, log)
    ess = await cat.search(set(), facility="ESS", see_all=True)
    assert pids(ess) == ["ess:p005:r0001"] and ess.total == 1
    xfel = await cat.search(set(), facility="EuXFEL", see_all=True)
    assert xfel.total == 4 and "ess:p005:r0001" not in pids(xfel)
    assert (await cat.search(set(), facility="ES", see_all=True)).total == 0  # whole component only
    assert (await cat.search(set(), facility="Nowhere", see_all=True)).total == 0
    cat.facility_names = ["EuXFEL", "ESS"]
    assert await cat.facilities() == ["EuXFEL", "ESS"]


# ---- search and paging ---------------------------------------------------------


async def test_paging_is_done_by_the_server(server, log):
    records = [
        scicat_dataset(
            f"xfel:p100:r{i:04d}",
            f"Run {i}",
            groups=["p100"],
            creation_time=f"2026-02-{i + 1:02d}T00:00:00.000Z",
        )
        for i in range(23)
    ]
    server.seed(records + base_records())
    cat = make_catalog(server, log)
    seen = []
    for offset in (0, 10, 20):
        page = await cat.search({"p100"}, query="p100", offset=offset, limit=10)
        assert page.total == 23
        assert (page.offset, page.limit) == (offset, 10)
        seen += pids(page)
        sent = last_filter(server)
        assert sent["limits"]["skip"] == offset and sent["limits"]["limit"] == 10
    assert len(seen) == 23 and len(set(seen)) == 23
    # newest first (order "creationTime:desc")
    assert seen == [f"xfel:p100:r{i:04d}" for i in reversed(range(23))]
    page = await cat.search({"p100"}, query="p100", offset=0, limit=10_000)
    assert page.limit == cat.max_page_size


@pytest.mark.parametrize(
    "query, expected",
    [
        ("a.b*c", {"xfel:p1:r1"}),  # metacharacters are literal
        ("(batch", {"xfel:p1:r1"}),  # an unbalanced group is no regex error
        ("LYSOZYME", {"xfel:p1:r1", "xfel:p1:r2"}),  # case-insensitive
        ("lysozyme [2]", {"xfel:p1:r2"}),  # every word must match
        (".*", set()),
        ("^xfel", set()),
        ("p1:r2", {"xfel:p1:r2"}),  # pid
        ("4242", {"xfel:p1:r2"}),  # proposal
        ("loki", {"ess:p2:r1"}),  # instrument (creationLocation)
    ],
)
async def test_text_search(server, log, query, expected):
    server.seed(
        [
            scicat_dataset("xfel:p1:r1", "Lysozyme (batch 1) a.b*c", public=True),
            scicat_dataset("xfel:p1:r2", "lysozyme axbbc [2]", public=True, proposal="4242"),
            scicat_dataset("ess:p2:r1", "Reference", public=True, location="/ESS/LoKI"),
        ]
    )
    cat = make_catalog(server, log)
    page = await cat.search(set(), query=query)
    assert set(pids(page)) == expected
    assert page.total == len(expected)


def test_regex_escape_is_literal():
    import re

    text = r"a.b*c+?^$|(x)[y]{z}\/-"
    assert re.fullmatch(regex_escape(text), text)
    assert regex_escape("abc_123") == "abc_123"


# ---- get -----------------------------------------------------------------------


async def test_get_unknown_forbidden_malformed(server, log):
    cat = make_catalog(server, log)
    assert (await cat.get("xfel:p002:r0001", {"p002"})).title == "Owner only"
    assert await cat.get("xfel:p002:r0001", {"p003"}) is None  # forbidden
    assert await cat.get("xfel:p999:r0001", {"p002"}) is None  # unknown
    before = server.request_count()
    for bad in ("../../etc", "a b", "", None, "/etc/passwd", "x" * 300):
        assert await cat.get(bad, {"p002"}, see_all=True) is None
    assert server.request_count() == before  # refused without asking SciCat


async def test_get_encodes_pid_with_slash(server, log):
    server.add(scicat_dataset("20.500.12269/4f8c991e", "Handle pid", public=True))
    cat = make_catalog(server, log)
    d = await cat.get("20.500.12269/4f8c991e", set())
    assert d is not None and d.title == "Handle pid"
    assert server.requests[-1][0].endswith("/datasets/" + quote("20.500.12269/4f8c991e", safe=""))


# ---- failures --------------------------------------------------------------------


def test_fake_requires_the_token(server):
    assert raw_get(server, "/datasets")[0] == 401
    assert raw_get(server, "/datasets", token="wrong")[0] == 401
    status, body = raw_get(server, "/datasets", token=server.token)
    assert status == 200 and len(body) == 5


async def test_wrong_token_is_catalog_error(server, log):
    cat = make_catalog(server, log)
    cat.token = "not-the-token"
    with pytest.raises(CatalogError, match="credentials"):
        await cat.search(set())
    with pytest.raises(CatalogError, match="credentials"):
        await cat.get("xfel:p001:r0001", set())


def test_token_from_environment(monkeypatch):
    monkeypatch.setenv("SCICAT_TOKEN", "from-env")
    assert SciCatCatalog().token == "from-env"
    cat = SciCatCatalog(auth_header="X-Token", auth_scheme="")
    assert cat._auth_headers()["X-Token"] == "from-env"


async def test_timeout_is_catalog_error(server, log):
    server.delay = 5.0  # stop() wakes the waiting handler
    cat = make_catalog(server, log, timeout=0.3)
    with pytest.raises(CatalogError, match="unreachable"):
        await cat.search(set())


async def test_unreachable_is_catalog_error(server, log):
    cat = make_catalog(server, log)
    server.stop()
    with pytest.raises(CatalogError, match="unreachable"):
        await cat.search(set())
    with pytest.raises(CatalogError, match="unreachable"):
        await cat.get("xfel:p001:r0001", set())


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_error_is_catalog_error(server, log, caplog, status):
    server.fail_status = status
    cat = make_catalog(server, log)
    with caplog.at_level(logging.ERROR, logger="test.scicat"):
        with pytest.raises(CatalogError, match="try again"):
            await cat.search(set())
    assert str(status) in caplog.text  # details go to the log


async def test_invalid_json_is_catalog_error(server, log):
    server.bad_json = True
    cat = make_catalog(server, log)
    with pytest.raises(CatalogError, match="unreachable"):
        await cat.search(set())
    with pytest.raises(CatalogError, match="unreachable"):
        await cat.get("xfel:p001:r0001", set())


async def test_not_configured_says_what_to_set(log):
    with pytest.raises(CatalogError, match=r"c\.SciCatCatalog\.url"):
        await SciCatCatalog(log=log).search(set())


async def test_malformed_records_are_skipped(server, log, caplog):
    good = scicat_dataset("xfel:p1:r1", "Good", public=True)
    server.seed(
        [
            good,
            scicat_dataset("bad pid with spaces", "Bad pid", public=True),
            scicat_dataset("xfel:p1:r2", "Relative folder", public=True, source_folder="raw/r2"),
            scicat_dataset("xfel:p1:r3", "Outside map", public=True, source_folder="/scratch/r3"),
            scicat_dataset("xfel:p1:r4", "Escapes map", public=True, source_folder="/gpfs/exfel/exp/../../etc"),
            scicat_dataset("xfel:p1:r5", "Negative size", public=True, size=-5),
            scicat_dataset("xfel:p1:r6", "Groups not a list", public=True, accessGroups="g"),
        ]
    )
    cat = make_catalog(server, log)
    with caplog.at_level(logging.WARNING, logger="test.scicat"):
        page = await cat.search(set())
    assert pids(page) == ["xfel:p1:r1"]
    assert page.total == 1
    assert caplog.text.count("Skipping SciCat record") == 6
    assert await cat.get("xfel:p1:r3", set()) is None
    assert (await cat.get("xfel:p1:r1", set())).path == "/data/exfel/xfel_p1_r1"


async def test_empty_path_map_keeps_source_folder(server, log):
    cat = make_catalog(server, log, path_map={})
    d = await cat.get("xfel:p001:r0001", set())
    assert d.path == "/gpfs/exfel/exp/xfel_p001_r0001"


# ---- cache -------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr("hub_ext.catalogs.cache.time.monotonic", c)
    return c


async def test_cache_hits_and_expiry(server, log, clock):
    cat = make_catalog(server, log, cache_ttl=30)
    first = await cat.search({"p002"}, query="owner")
    n = server.request_count()
    assert n == 2  # page + count
    assert pids(await cat.search({"p002"}, query="owner")) == pids(first)
    assert server.request_count() == n  # served from the cache
    await cat.get("xfel:p002:r0001", {"p002"})
    await cat.get("xfel:p002:r0001", {"p002"})
    assert server.request_count("/datasets/xfel%3Ap002%3Ar0001") == 1
    clock.now += 31
    server.remove("xfel:p002:r0001")
    assert (await cat.search({"p002"}, query="owner")).total == 0  # expired: asked again
    assert await cat.get("xfel:p002:r0001", {"p002"}) is None
    assert server.request_count() == n + 1 + 3  # the first get, then page + count + get


async def test_cache_is_per_group_set(server, log, clock):
    cat = make_catalog(server, log, cache_ttl=30)
    assert "xfel:p004:r0001" in pids(await cat.search({"p004"}))
    assert "xfel:p004:r0001" not in pids(await cat.search(set()))
    assert "xfel:p004:r0001" not in pids(await cat.search({"p002"}))
    # the cached record is re-checked for each caller
    assert await cat.get("xfel:p004:r0001", {"p004"}) is not None
    assert await cat.get("xfel:p004:r0001", {"p002"}) is None


async def test_cache_is_bounded(server, log, clock):
    cat = make_catalog(server, log, cache_ttl=30, cache_size=3)
    for q in ("a", "b", "c", "d"):
        await cat.search(set(), query=q)
    n = server.request_count()
    await cat.search(set(), query="a")  # evicted as least recently used
    assert server.request_count() == n + 2
    await cat.search(set(), query="d")
    assert server.request_count() == n + 2


def test_alias_resolves():
    assert catalog_class_from_name("scicat") is SciCatCatalog


# ---- the fake itself (other suites rely on it) ------------------------------------------


def test_fake_reads_loopback_paging_and_where_count(server):
    filt = {"where": {"isPublished": True}, "skip": 1, "limit": 1, "order": "pid ASC"}
    status, body = raw_get(server, "/datasets", {"filter": json.dumps(filt)}, server.token)
    assert status == 200 and [r["pid"] for r in body] == ["xfel:p001:r0001"]
    where = {"or": [{"ownerGroup": {"inq": ["p002"]}}, {"accessGroups": "collab"}]}
    status, body = raw_get(server, "/datasets/count", {"where": json.dumps(where)}, server.token)
    assert (status, body) == (200, {"count": 2})
    where = {"techniques.name": {"like": "^none$"}}
    assert raw_get(server, "/datasets/count", {"where": json.dumps(where)}, server.token)[1] == {"count": 0}
    bad = {"where": {"pid": {"$regex": "("}}}
    assert raw_get(server, "/datasets", {"filter": json.dumps(bad)}, server.token)[0] == 400


async def test_wrong_base_url_is_catalog_error(server, log):
    cat = make_catalog(server, log)
    cat.url = server.url.replace("/api/v3", "/api/v9")  # every path answers 404
    with pytest.raises(CatalogError, match="unreachable"):
        await cat.search(set())
    assert await cat.get("xfel:p001:r0001", set()) is None


async def test_queries_on_the_users_behalf_with_their_token(log):
    """on_behalf_of_user: SciCat sees the user's own access token (its ACLs apply), cached per token."""
    from hub_ext.catalogs.base import user_access_token

    with fake_scicat(base_records(), token="alice-access-token") as s:
        cat = SciCatCatalog(url=s.url, token="hub-functional-token", on_behalf_of_user=True,
                            path_map=PATH_MAP, log=log)
        user_access_token.set("alice-access-token")
        page = await cat.search(["p002"])
        assert "xfel:p002:r0001" in [d.pid for d in page.items]
        asked = s.request_count()
        user_access_token.set("someone-else")  # another user's token: never answered from alice's cache
        with pytest.raises(CatalogError, match="credentials"):
            await cat.search(["p002"])
        assert s.request_count() > asked
        user_access_token.set(None)  # no user token (password login): the hub's own is used
        with pytest.raises(CatalogError, match="credentials"):
            await cat.get("xfel:p002:r0001", ["p002"])
        assert SciCatCatalog(url=s.url, token="alice-access-token", path_map=PATH_MAP, log=log)._acting_token() \
            == "alice-access-token"
