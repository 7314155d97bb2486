"""The federated catalogue over real sockets: SciCat-speaking fakes and a YAML file.

One fake answers slowly (beyond its timeout), one fails, one sends malformed
records; the picker's search still answers within the slow one's timeout,
names the unavailable facilities, skips malformed records and never shows a
dataset the groups do not grant. Paging walks every backend with no gaps or
repeats.
"""

import asyncio
import logging
import time

import pytest
import yaml

from hub_ext.catalogs import CatalogError, catalog_class_from_name
from hub_ext.catalogs.federated import BackendUnavailable, FederatedCatalog

from .fake_scicat import fake_scicat, scicat_dataset

GROUPS = ["p1", "p2"]


def xfel_records():
    recs = [scicat_dataset(f"10.1/xfel-{i:02d}", f"XFEL run {i:02d}", groups=["p1"], proposal="1",
                           creation_time=f"2026-01-{i + 1:02d}T00:00:00.000Z") for i in range(7)]
    recs.append(scicat_dataset("10.1/xfel-secret", "secret", groups=["other"]))
    return recs


def yaml_entries():
    return [{"pid": f"petra:{i}", "title": f"PETRA scan {i}", "path": f"/data/petra/{i}",
             "access_groups": ["p2"], "facility": "ignored: the backend label wins"} for i in range(5)] + [
        {"pid": "petra:hidden", "title": "hidden", "path": "/data/petra/h", "access_groups": ["nobody"]}]


@pytest.fixture
def backends(tmp_path):
    """(xfel fake, spare fake, yaml path): three backends, all healthy to begin with."""
    path = tmp_path / "petra.yaml"
    path.write_text(yaml.safe_dump({"datasets": yaml_entries()}))
    spare = [scicat_dataset(f"ess-{i}", f"ESS {i}", groups=["p2"], location="/ESS/LOKI") for i in range(3)]
    with fake_scicat(xfel_records()) as xfel, fake_scicat(spare) as ess:
        yield xfel, ess, path


def federated(xfel, ess, path, xfel_timeout=1.0, **kw):
    return FederatedCatalog(backends=[
        {"name": "xfel", "facility": "EuXFEL", "class": "scicat", "timeout": xfel_timeout,
         "config": {"url": xfel.url, "token": xfel.token, "cache_ttl": 0}},
        {"name": "petra", "facility": "PETRA III", "class": "yaml", "config": {"path": str(path)}},
        {"name": "ess", "facility": "ESS", "class": "scicat", "timeout": 1.0,
         "config": {"url": ess.url, "token": ess.token, "cache_ttl": 0}},
    ], **{"cache_ttl": 0, "down_retry": 0, **kw})


def run(coro):
    return asyncio.run(coro)


def pids(page):
    return [d.pid for d in page.items]


def test_paging_walks_every_backend_without_gaps_or_repeats(backends):
    cat = federated(*backends)
    everything = run(cat.search(GROUPS, limit=100))
    assert everything.total == 7 + 5 + 3 and everything.unavailable == []
    assert pids(everything)[:2] == ["xfel:10.1/xfel-06", "xfel:10.1/xfel-05"]  # SciCat's own order, newest first
    assert "petra:petra:0" in pids(everything) and "ess:ess-0" in pids(everything)
    for size in (1, 2, 4, 6, 7, 15):
        walked = []
        for offset in range(0, everything.total, size):
            page = run(cat.search(GROUPS, offset=offset, limit=size))
            assert page.total == everything.total
            walked += pids(page)
        assert walked == pids(everything), size
    facilities = {d.pid.split(":")[0]: d.facility for d in everything.items}
    assert facilities == {"xfel": "EuXFEL", "petra": "PETRA III", "ess": "ESS"}
    assert not any("secret" in p or "hidden" in p for p in pids(everything))


def test_facility_filter_text_search_and_facility_list(backends):
    cat = federated(*backends)
    assert run(cat.facilities()) == ["EuXFEL", "PETRA III", "ESS"]
    petra = run(cat.search(GROUPS, facility="PETRA III", limit=100))
    assert petra.total == 5 and {d.facility for d in petra.items} == {"PETRA III"}
    assert run(cat.search(GROUPS, facility="Nowhere")).total == 0
    found = run(cat.search(GROUPS, query="scan 3"))
    assert pids(found) == ["petra:petra:3"]
    assert pids(run(cat.search(GROUPS, query="ESS 2"))) == ["ess:ess-2"]


def test_get_is_resolved_and_checked_by_the_owning_backend(backends):
    xfel, _, _ = backends
    cat = federated(*backends)
    d = run(cat.get("xfel:10.1/xfel-03", GROUPS))
    assert d.pid == "xfel:10.1/xfel-03" and d.facility == "EuXFEL" and d.path.startswith("/gpfs/exfel/exp/")
    assert d.extra["source_pid"] == "10.1/xfel-03"
    assert run(cat.get("xfel:10.1/xfel-secret", GROUPS)) is None  # exists, not granted
    assert run(cat.get("xfel:10.1/xfel-03", ["p2"])) is None
    assert run(cat.get("petra:petra:1", ["p2"])).path == "/data/petra/1"
    for bad in ("nowhere:x", "xfel", "xfel:", "10.1/xfel-03", "xfel:../../etc"):
        assert run(cat.get(bad, GROUPS)) is None
    xfel.remove("10.1/xfel-03")  # revoked at the source: never cached
    assert run(cat.get("xfel:10.1/xfel-03", GROUPS)) is None


def test_slow_failing_and_malformed_backends(backends, caplog):
    xfel, ess, path = backends
    cat = federated(xfel, ess, path)
    xfel.delay = 5.0  # far beyond its 1 s timeout
    ess.fail_status = 500
    page = run(cat.search(GROUPS, limit=100))  # EuXFEL would answer, after 5 s: left out at its 1 s timeout
    assert sorted(page.unavailable) == ["ESS", "EuXFEL"]
    assert pids(page) == [f"petra:petra:{i}" for i in range(5)] and page.total == 5
    with pytest.raises(BackendUnavailable, match="EuXFEL"):
        run(cat.get("xfel:10.1/xfel-01", GROUPS))
    with pytest.raises(BackendUnavailable, match="ESS"):
        run(cat.get("ess:ess-1", GROUPS))

    # malformed records (no pid, relative path, wrong types) are skipped and logged;
    # a leaked record of another group is never shown
    xfel.delay, ess.fail_status = 0.0, None
    ess.inject = [{"pid": None, "datasetName": "no pid"},
                  {"pid": "ess-x", "sourceFolder": "relative/path", "ownerGroup": "p2"},
                  {"pid": "ess-y", "sourceFolder": "/x", "ownerGroup": "p2", "size": "big"},
                  scicat_dataset("ess-leak", groups=["other"])]
    with caplog.at_level(logging.WARNING):
        page = run(cat.search(GROUPS, limit=100))
    assert page.unavailable == []
    shown = pids(page)
    assert not any(p.endswith(("ess-x", "ess-y", "ess-leak")) for p in shown)
    assert [p for p in shown if p.startswith("ess:")] == ["ess:ess-0", "ess:ess-1", "ess:ess-2"]
    assert "Skipping SciCat record" in caplog.text and "may not see" in caplog.text

    # every backend down: the search itself fails, with a message naming them
    xfel.stop()
    ess.stop()
    path.unlink()
    cat2 = federated(xfel, ess, path)
    with pytest.raises(CatalogError, match="EuXFEL, PETRA III, ESS"):
        run(cat2.search(GROUPS))


def test_a_failed_backend_is_left_out_for_a_while_and_probed_in_the_background(backends):
    xfel, ess, path = backends
    # the probe's 3 s timeout leaves a loaded machine ample time to answer the search before it
    cat = federated(xfel, ess, path, xfel_timeout=3.0, down_retry=1.5)

    async def scenario():  # one event loop, as in the search service: the probe outlives a search
        xfel.delay = 10.0
        assert (await cat.search(GROUPS)).unavailable == ["EuXFEL"]
        asked = xfel.request_count()
        assert (await cat.search(GROUPS, query="scan")).unavailable == ["EuXFEL"]
        assert xfel.request_count() == asked  # not asked again: no second timeout to wait for
        await asyncio.sleep(1.6)
        # known down, retry due: this search does not wait, a probe asks in the background (and times out)
        assert (await cat.search(GROUPS, query="probe")).unavailable == ["EuXFEL"]
        probe = cat._probes.get("xfel")
        assert probe is not None and not probe.done()  # the search answered without waiting for the probe
        deadline = time.monotonic() + 10
        while xfel.request_count() == asked:
            assert time.monotonic() < deadline, "no background probe of the failed backend"
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 30
        while not probe.done():  # the probe times out: left out again
            assert time.monotonic() < deadline, "the background probe never ended"
            await asyncio.sleep(0.05)
        assert (await cat.search(GROUPS, query="still")).unavailable == ["EuXFEL"]
        # back: the probe after the next interval finds it, and the searches after it include it
        xfel.delay = 0.0
        await asyncio.sleep(1.6)
        assert (await cat.search(GROUPS, query="again")).unavailable == ["EuXFEL"]  # starts the probe
        deadline = time.monotonic() + 10
        while (page := await cat.search(GROUPS, limit=100)).unavailable:
            assert time.monotonic() < deadline, "the backend never came back"
            await asyncio.sleep(0.05)
        assert page.total == 15

    run(scenario())
    # resolving a dataset at start always asks the owning backend
    xfel.delay = 5.0
    run(cat.search(GROUPS, query="x"))
    xfel.delay = 0.0
    assert run(cat.get("xfel:10.1/xfel-02", GROUPS)).title == "XFEL run 02"


def test_a_backend_past_its_deadline_ends_quietly(backends, caplog):
    """The federated timeout cuts the wait; SciCat's own, longer, timeout ends the
    request later, and that end is not logged as an error after cancellation."""
    xfel, ess, path = backends
    cat = FederatedCatalog(backends=[
        {"name": "xfel", "facility": "EuXFEL", "class": "scicat", "timeout": 0.3,
         "config": {"url": xfel.url, "token": xfel.token, "cache_ttl": 0, "timeout": 1.0}},
        {"name": "petra", "facility": "PETRA III", "class": "yaml", "config": {"path": str(path)}},
    ], cache_ttl=0, down_retry=0)
    xfel.delay = 5.0

    async def scenario():
        assert (await cat.search(GROUPS)).unavailable == ["EuXFEL"]
        await asyncio.sleep(3.0)  # the loop runs on while SciCat's own 1 s timeout ends the request

    with caplog.at_level(logging.ERROR):
        run(scenario())
    assert "after Future was cancelled" not in caplog.text


def test_answers_are_cached_per_groups_and_query(backends):
    xfel, ess, path = backends
    cat = federated(xfel, ess, path, cache_ttl=60)
    run(cat.search(GROUPS, limit=5))
    before = xfel.request_count()
    run(cat.search(GROUPS, limit=5))
    assert xfel.request_count() == before
    run(cat.search(["p1"], limit=5))
    assert xfel.request_count() > before


def test_backends_are_plugins_and_configuration_is_checked(tmp_path):
    assert catalog_class_from_name("federated") is FederatedCatalog
    for entries, message in [
        ([{"name": "A:b", "facility": "x"}], "name"),
        ([{"name": "a", "facility": "x"}, {"name": "a", "facility": "y"}], "twice"),
        ([{"name": "a"}], "facility"),
        ([{"name": "a", "facility": "x", "timeout": 0}], "timeout"),
        ([{"name": "a", "facility": "x", "class": "federated"}], "cannot contain"),
        ([{"name": "a", "facility": "x", "class": "no_such_plugin"}], "no_such_plugin"),
        ([{"name": "a", "facility": "x", "colour": 1}], "unknown"),
    ]:
        with pytest.raises(Exception, match=message):
            FederatedCatalog(backends=entries)


PLUGIN = '''
from hub_ext.catalogs import Catalog, Dataset, Page


class MiniCatalog(Catalog):
    """A facility's own backend: two datasets, one for group g1."""

    DATA = [Dataset.from_dict({"pid": "m1", "title": "Mini one", "path": "/data/m/1", "access_groups": ["p1"]}),
            Dataset.from_dict({"pid": "m2", "title": "Mini two", "path": "/data/m/2", "access_groups": ["x"]})]

    async def search(self, groups, query="", facility="", offset=0, limit=20, see_all=False):
        items = [d for d in self.DATA if d.visible_to(groups, see_all)]
        return Page(total=len(items), offset=offset, limit=limit, items=items[offset:offset + limit])

    async def get(self, pid, groups, see_all=False):
        return next((d for d in self.DATA if d.pid == pid and d.visible_to(groups, see_all)), None)
'''


def test_a_facility_plugin_is_found_through_its_entry_point(tmp_path, monkeypatch, backends):
    """A package that declares a ``daas.catalogs`` entry point joins the federation by name."""
    (tmp_path / "mini_daas_catalog.py").write_text(PLUGIN)
    dist = tmp_path / "mini_daas_catalog-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mini-daas-catalog\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[daas.catalogs]\nmini = mini_daas_catalog:MiniCatalog\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert catalog_class_from_name("mini").__name__ == "MiniCatalog"
    xfel, _, _ = backends
    cat = FederatedCatalog(backends=[
        {"name": "mini", "facility": "Mini Facility", "class": "mini"},
        {"name": "xfel", "facility": "EuXFEL", "class": "scicat", "config": {"url": xfel.url, "token": xfel.token}},
    ], cache_ttl=0)
    page = run(cat.search(GROUPS, limit=3))
    assert pids(page) == ["mini:m1", "xfel:10.1/xfel-06", "xfel:10.1/xfel-05"] and page.total == 8
    assert run(cat.get("mini:m1", GROUPS)).facility == "Mini Facility"
    assert run(cat.get("mini:m2", GROUPS)) is None
