"""YAML catalogue, dataset records and environments, without a hub."""

import asyncio
import os
from pathlib import Path

import pytest
import yaml

from hub_ext.catalogs import CatalogError, Dataset, catalog_class_from_name, slugify, valid_pid
from hub_ext.catalogs.yaml_catalog import YamlCatalog
from hub_ext.environments import Environment, EnvironmentConfigError, EnvironmentsFile, parse_bytes, parse_environments


def entry(pid, **kw):
    d = {"pid": pid, "title": f"Title of {pid}", "facility": "EuXFEL", "instrument": "SPB/SFX",
         "proposal": pid.split(":")[1], "path": f"/data/{pid.replace(':', '/')}", "access_groups": []}
    d.update(kw)
    return d


def write(path, datasets):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"datasets": datasets}))
    os.replace(tmp, path)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "catalog.yaml"
    write(path, [
        entry("xfel:p1:r1", title="Lysozyme SFX", access_groups=["g1"]),
        entry("xfel:p1:r2", title="Lysozyme dark run", access_groups=["g1"]),
        entry("xfel:p2:r1", title="Secret", access_groups=["g2"]),
        entry("petra:p3:s1", title="Open powder", facility="PETRA III", public=True),
    ])
    return YamlCatalog(path=str(path), check_interval=0)


def test_search_respects_groups_and_public(catalog):
    page = run(catalog.search(["g1"]))
    assert [d.pid for d in page.items] == ["xfel:p1:r1", "xfel:p1:r2", "petra:p3:s1"]
    assert page.total == 3
    assert [d.pid for d in run(catalog.search([])).items] == ["petra:p3:s1"]
    assert run(catalog.search([], see_all=True)).total == 4


def test_search_words_facility_and_pages(catalog):
    assert [d.pid for d in run(catalog.search(["g1", "g2"], query="LYSOZYME run")).items] == ["xfel:p1:r2"]
    assert run(catalog.search(["g1"], query="secret")).total == 0
    assert [d.pid for d in run(catalog.search(["g1"], facility="PETRA III")).items] == ["petra:p3:s1"]
    assert run(catalog.search(["g1"], facility="Nowhere")).total == 0
    p1 = run(catalog.search(["g1", "g2"], limit=2))
    p2 = run(catalog.search(["g1", "g2"], offset=2, limit=2))
    assert p1.total == p2.total == 4
    assert [d.pid for d in p1.items + p2.items] == ["xfel:p1:r1", "xfel:p1:r2", "xfel:p2:r1", "petra:p3:s1"]
    assert run(catalog.search(["g1"], limit=10_000)).limit == catalog.max_page_size


def test_search_matches_text_across_record_boundaries_only_within_records(tmp_path):
    path = tmp_path / "c.yaml"
    write(path, [entry("a:p1:r1", title="ends with ab", public=True), entry("a:p2:r1", title="cd start", public=True)])
    cat = YamlCatalog(path=str(path))
    # "ab cd" is two words, each matched separately; "ab\ncd" never spans two records
    assert run(cat.search([], query="ab cd")).total == 0
    assert run(cat.search([], query="ab")).total == 1


def test_get_hides_unknown_forbidden_and_malformed(catalog):
    assert run(catalog.get("xfel:p1:r1", ["g1"])).title == "Lysozyme SFX"
    assert run(catalog.get("xfel:p2:r1", ["g1"])) is None
    assert run(catalog.get("xfel:p2:r1", ["g1"], see_all=True)) is not None
    assert run(catalog.get("nope:p0:r0", ["g1"])) is None
    assert run(catalog.get("../../etc/passwd", ["g1"])) is None


def test_reloads_when_file_changes_and_keeps_last_good_version(catalog):
    assert run(catalog.search(["g1"])).total == 3
    write_path = catalog.path
    with open(write_path) as f:
        doc = yaml.safe_load(f)
    doc["datasets"].append(entry("xfel:p1:r3", access_groups=["g1"]))
    with open(write_path, "w") as f:
        yaml.safe_dump(doc, f)
    assert run(catalog.search(["g1"])).total == 4
    with open(write_path, "w") as f:
        f.write("datasets: [unclosed")
    assert run(catalog.search(["g1"])).total == 4  # broken edit: last good version served


@pytest.mark.parametrize("content,message", [
    ("datasets: [unclosed", "Cannot read the dataset catalogue"),
    ("other: 1", "expected a top-level 'datasets:' list"),
    ("datasets:\n  - {pid: '../x', path: /data/x}", "not a valid identifier"),
    ("datasets:\n  - {pid: 'a:b', path: relative/x}", "path must be absolute"),
    ("datasets:\n  - {pid: 'a:b', path: /x}\n  - {pid: 'a:b', path: /y}", "appears twice"),
    ("datasets:\n  - {pid: 'a:b', path: /x, access_groups: 3}", "access_groups must be a list"),
])
def test_invalid_catalogue_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(CatalogError, match=message):
        run(YamlCatalog(path=str(path)).search([]))


def test_missing_catalogue_file(tmp_path):
    with pytest.raises(CatalogError, match="Cannot read"):
        run(YamlCatalog(path=str(tmp_path / "missing.yaml")).search([]))
    with pytest.raises(CatalogError, match="No catalogue file configured"):
        run(YamlCatalog().search([]))


def test_dataset_record_and_slug():
    d = Dataset.from_dict(entry("xfel:p002120:r0029", access_groups="p2120", size_bytes=10, color="blue"))
    assert d.access_groups == ("p2120",)
    assert d.slug == "xfel-p002120-r0029"
    assert d.extra == {"color": "blue"}
    assert d.to_dict()["slug"] == "xfel-p002120-r0029"
    assert d.visible_to({"p2120"}) and not d.visible_to({"other"})
    assert slugify("../../etc") == "etc"
    assert not valid_pid("a b") and not valid_pid("x/../y") and valid_pid("10.5281/zenodo.123")


def test_catalog_class_names():
    assert catalog_class_from_name("yaml") is YamlCatalog
    assert catalog_class_from_name("hub_ext.catalogs.yaml_catalog.YamlCatalog") is YamlCatalog
    assert catalog_class_from_name("scicat").__name__ == "SciCatCatalog"
    with pytest.raises(ValueError, match="not a hub_ext.catalogs.Catalog subclass"):
        catalog_class_from_name("hub_ext.environments.Environment")


# -- environments ------------------------------------------------------------------------


def test_environment_parsing_and_facility_filter():
    envs = parse_environments([
        {"slug": "euxfel-mx", "display_name": "MX", "facilities": ["EuXFEL"], "mem_limit": "16G",
         "cpu_limit": 4, "cmd": "python -m jupyterhub.singleuser", "default_url": "/lab"},
        {"slug": "any", "display_name": "Any"},
    ])
    mx, anyenv = envs
    assert mx.mem_limit == 16 * 1024**3 and mx.cpu_limit == 4.0
    assert mx.cmd == ("python", "-m", "jupyterhub.singleuser")
    xfel = Dataset.from_dict(entry("xfel:p1:r1"))
    petra = Dataset.from_dict(entry("petra:p1:r1", facility="PETRA III"))
    assert mx.offered_for(xfel) and not mx.offered_for(petra)
    assert anyenv.offered_for(petra)


@pytest.mark.parametrize("entries,message", [
    ([], "non-empty list"),
    ([{"slug": "Bad Slug"}], "lowercase letters"),
    ([{"slug": "a"}, {"slug": "a"}], "appears twice"),
    ([{"slug": "a", "mem_limit": "lots"}], "mem_limit"),
    ([{"slug": "a", "cpu_limit": "four"}], "cpu_limit must be a number"),
    ([{"slug": "a", "default_url": "lab"}], "must start with '/'"),
    ([{"slug": "a", "imagee": "x"}], "unknown keys"),
])
def test_invalid_environments(entries, message):
    with pytest.raises(EnvironmentConfigError, match=message):
        parse_environments(entries)


def test_environments_file_reloads(tmp_path):
    path = tmp_path / "envs.yaml"
    path.write_text(yaml.safe_dump({"environments": [{"slug": "a"}]}))
    envs = EnvironmentsFile(str(path))
    assert [e.slug for e in envs.load()] == ["a"]
    path.write_text(yaml.safe_dump({"environments": [{"slug": "a"}, {"slug": "b2"}]}))
    assert [e.slug for e in envs.load()] == ["a", "b2"]
    path.write_text("environments: [{slug: BAD}]")  # a broken edit: the last good version stays
    assert [e.slug for e in envs.load()] == ["a", "b2"]
    with pytest.raises(EnvironmentConfigError, match="Cannot read"):
        EnvironmentsFile(str(tmp_path / "nope.yaml")).load()


def test_parse_bytes():
    assert parse_bytes("512M") == 512 * 1024**2
    assert parse_bytes("1.5G") == int(1.5 * 1024**3)
    assert parse_bytes(7) == 7
    with pytest.raises(ValueError):
        parse_bytes("12 parsecs")
    assert Environment.from_dict({"slug": "x"}).display_name == "x"


def test_index_search_equals_brute_force(tmp_path):
    """The column index answers exactly what filtering the records one by one answers."""
    import random

    rnd = random.Random(7)
    groups = [f"p{i}" for i in range(8)]
    words = ["lysozyme", "dark", "sfx", "spb", "fxe", "run", "2120", "powder", "a", "r1"]
    datasets = [
        entry(f"xfel:p{rnd.randrange(3000)}:r{i}", title=" ".join(rnd.sample(words, 3)),
              facility=rnd.choice(["EuXFEL", "PETRA III"]), instrument=rnd.choice(["SPB/SFX", "FXE"]),
              access_groups=rnd.sample(groups, rnd.randrange(3)), public=rnd.random() < 0.1)
        for i in range(600)
    ]
    path = tmp_path / "c.yaml"
    write(path, datasets)
    cat = YamlCatalog(path=str(path))
    records = [Dataset.from_dict(d) for d in datasets]
    for _ in range(150):
        user = set(rnd.sample(groups, rnd.randrange(4)))
        query = " ".join(rnd.sample(words, rnd.randrange(3))).upper()
        facility = rnd.choice(["", "EuXFEL", "PETRA III"])
        see_all = rnd.random() < 0.1
        expected = [
            d.pid for d in records
            if d.visible_to(user, see_all) and (not facility or d.facility == facility)
            and all(w in d.search_text() for w in query.lower().split())
        ]
        page = run(cat.search(user, query=query, facility=facility, limit=100, see_all=see_all))
        assert page.total == len(expected)
        assert [d.pid for d in page.items] == expected[:100]


def test_slow_reload_is_answered_from_previous_version(catalog, monkeypatch):
    import threading

    async def scenario():
        assert (await catalog.search(["g1"])).total == 3
        release = threading.Event()
        real_load = catalog.load

        def slow_load():
            release.wait(10)
            return real_load()

        monkeypatch.setattr(catalog, "load", slow_load)
        catalog.reload_wait = 0.05
        with open(catalog.path) as f:
            doc = yaml.safe_load(f)
        doc["datasets"].append(entry("xfel:p1:r9", access_groups=["g1"]))
        write(Path(catalog.path), doc["datasets"])
        assert (await catalog.search(["g1"])).total == 3  # still loading: previous version
        release.set()
        for _ in range(200):
            if (await catalog.search(["g1"])).total == 4:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the new version never replaced the old one")

    run(scenario())
