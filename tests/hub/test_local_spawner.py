"""FacilityLocalSpawner's session set-up on disk, without a hub."""

import asyncio
import json
from types import SimpleNamespace

import pytest

from hub_ext.catalog import Dataset
from hub_ext.environments import Environment
from hub_ext.spawner import FacilityLocalSpawner, SpawnRefused


def spawner(tmp_path, **kw):
    examples = tmp_path / "examples"
    examples.mkdir(exist_ok=True)
    (examples / "explore.ipynb").write_text("{}")
    user = SimpleNamespace(name="alice", groups=[], admin=False, url="/user/alice/")
    return FacilityLocalSpawner(user=user, users_root=str(tmp_path / "users"), examples_dir=str(examples), **kw)


def dataset(tmp_path, pid="xfel:p1:r1"):
    path = tmp_path / "archive" / pid.replace(":", "_")
    path.mkdir(parents=True, exist_ok=True)
    return Dataset.from_dict({"pid": pid, "title": "t", "path": str(path), "facility": "EuXFEL"})


ENV = Environment.from_dict({"slug": "mx", "display_name": "MX", "default_url": "/lab"})


def test_prepare_session_links_dataset_writes_manifest_and_keeps_edits(tmp_path):
    sp = spawner(tmp_path)
    first, second = dataset(tmp_path, "xfel:p1:r1"), dataset(tmp_path, "xfel:p1:r2")
    asyncio.run(sp.prepare_session(first, ENV))
    home = tmp_path / "users" / "alice"
    (home / "notebooks" / "explore.ipynb").write_text("my edits")

    env = asyncio.run(sp.prepare_session(second, ENV))
    assert sorted(p.name for p in (home / "data").iterdir()) == ["xfel-p1-r2"]  # the old link is gone
    assert str((home / "data" / "xfel-p1-r2").resolve()) == second.path
    assert (home / "notebooks" / "explore.ipynb").read_text() == "my edits"
    manifest = json.loads((home / ".daas" / "session.json").read_text())
    assert manifest["dataset"]["pid"] == "xfel:p1:r2" and manifest["environment"]["slug"] == "mx"
    assert env == {
        "DAAS_DATASET_PID": "xfel:p1:r2", "DAAS_DATASET_PATH": str(home / "data" / "xfel-p1-r2"),
        "DAAS_ENVIRONMENT": "mx", "DAAS_SESSION": str(home / ".daas" / "session.json"),
    }


def test_prepare_session_never_replaces_a_real_folder(tmp_path):
    sp = spawner(tmp_path)
    d = dataset(tmp_path)
    mine = tmp_path / "users" / "alice" / "data" / d.slug
    mine.mkdir(parents=True)
    (mine / "results.txt").write_text("keep me")
    with pytest.raises(SpawnRefused, match="is in the way") as e:
        asyncio.run(sp.prepare_session(d, ENV))
    assert e.value.status_code == 409
    assert (mine / "results.txt").read_text() == "keep me"


def test_missing_dataset_directory_is_refused(tmp_path):
    d = Dataset.from_dict({"pid": "xfel:p9:r9", "title": "t", "path": str(tmp_path / "gone")})
    with pytest.raises(SpawnRefused, match="not reachable on this machine"):
        asyncio.run(spawner(tmp_path).prepare_session(d, ENV))


@pytest.mark.parametrize("roots,path,allowed", [
    ([], "/anything", True),
    (["/data"], "/data/exfel/r1", True),
    (["/data"], "/data", True),
    (["/data"], "/database/r1", False),
    (["/data/"], "/data/../etc", False),
    (["/"], "/etc", True),
])
def test_allowed_data_roots(tmp_path, roots, path, allowed):
    assert spawner(tmp_path, allowed_data_roots=roots)._data_path_allowed(path) is allowed


def test_environment_traits_reset_between_starts(tmp_path):
    sp = spawner(tmp_path, mem_limit=1024, default_url="/tree")
    sp.apply_environment(Environment.from_dict({"slug": "big", "mem_limit": "16G", "default_url": "/lab"}))
    assert sp.mem_limit == 16 * 1024**3 and sp.default_url == "/lab"
    sp.apply_environment(Environment.from_dict({"slug": "plain"}))
    assert sp.mem_limit == 1024 and sp.default_url == "/tree"
