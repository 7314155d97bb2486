"""FacilityLocalSpawner's session set-up on disk, without a hub."""

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hub_ext.catalogs import Dataset
from hub_ext.environments import Environment
from hub_ext.spawners.local import FacilityLocalSpawner
from hub_ext.spawners import SpawnRefused


def spawner(tmp_path, **kw):
    examples = tmp_path / "examples"
    examples.mkdir(exist_ok=True)
    (examples / "explore.ipynb").write_text("{}")
    user = SimpleNamespace(name="alice", groups=[], admin=False, url="/user/alice/")
    kw.setdefault("allow_root", True)  # CI runs as root; the refusal has its own test
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
    home = Path(sp.home_dir)
    assert home.parent == tmp_path / "users"
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
    mine = Path(sp.home_dir) / "data" / d.slug
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


def test_homes_are_distinct_per_user_and_server(tmp_path):
    homes = set()
    for name, server in [("a@b", ""), ("a-b", ""), ("a-b", "second"), ("a-b-2dsecond", "")]:
        sp = spawner(tmp_path)
        sp.user = SimpleNamespace(name=name, groups=[], admin=False, url="/")
        sp.orm_spawner = SimpleNamespace(name=server, display_name=server, server=None)
        homes.add(sp.home_dir)
    assert len(homes) == 4


def test_refuses_root_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(SpawnRefused, match="runs as root") as e:
        asyncio.run(spawner(tmp_path, allow_root=False).prepare_session(dataset(tmp_path), ENV))
    assert e.value.status_code == 503
    assert asyncio.run(spawner(tmp_path, allow_root=True).prepare_session(dataset(tmp_path), ENV))


def test_environment_cmd_and_configured_cmd(tmp_path):
    sp = spawner(tmp_path, cmd=["/opt/site/bin/jupyterhub-singleuser"])
    sp.apply_environment(Environment.from_dict({"slug": "other", "cmd": "/opt/other/bin/python -m jupyterhub.singleuser"}))
    assert sp.cmd == ["/opt/other/bin/python", "-m", "jupyterhub.singleuser"]
    sp.apply_environment(Environment.from_dict({"slug": "plain"}))
    assert sp.cmd == ["/opt/site/bin/jupyterhub-singleuser"]  # the site's configuration, not a default


# -- validation and the form, with a real YAML catalogue -------------------------------------


def configured(tmp_path, datasets, user_groups=(), admin=False, **spawner_config):
    from traitlets.config import Config

    import yaml

    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump({"datasets": datasets}))
    config = Config()
    config.YamlCatalog.path = str(tmp_path / "catalog.yaml")
    config.FacilitySpawner.environments = [{"slug": "any", "display_name": "Any"}]
    for key, value in spawner_config.items():
        setattr(config.FacilitySpawner, key, value)
    sp = spawner(tmp_path, config=config)
    sp.user = SimpleNamespace(name="alice", groups=[SimpleNamespace(name=g) for g in user_groups], admin=admin, url="/")
    return sp


def record(tmp_path, pid, **kw):
    return {"pid": pid, "title": pid, "path": str(dataset(tmp_path, pid).path), **kw}


def test_admins_see_restricted_data_only_when_configured(tmp_path):
    datasets = [record(tmp_path, "xfel:p9:r1", access_groups=["p9"])]
    options = {"dataset": "xfel:p9:r1", "environment": "any"}
    with pytest.raises(SpawnRefused, match="does not exist or you do not have access"):
        asyncio.run(configured(tmp_path, datasets, admin=True).resolve_options(options))
    (tmp_path / "b").mkdir()
    sp = configured(tmp_path / "b", datasets, admin=True, admin_sees_all_datasets=True)
    assert asyncio.run(sp.resolve_options(options))[0].pid == "xfel:p9:r1"
    assert asyncio.run(sp.search_datasets()).total == 1


def test_datasets_outside_allowed_roots_are_refused(tmp_path):
    datasets = [record(tmp_path, "xfel:p1:r1", public=True)]
    sp = configured(tmp_path, datasets, allowed_data_roots=[str(tmp_path / "elsewhere")])
    with pytest.raises(SpawnRefused, match="outside the facility's data areas") as e:
        asyncio.run(sp.resolve_options({"dataset": "xfel:p1:r1", "environment": "any"}))
    assert e.value.status_code == 403


def test_form_escapes_catalogue_text(tmp_path):
    evil = '<img src=x onerror=alert(1)></script><script>alert(2)</script>'
    sp = configured(tmp_path, [record(tmp_path, "xfel:p1:r1", public=True, title=evil)])
    html = asyncio.run(sp.render_options_form())
    assert "<img src=x" not in html and "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown as text in the table


def test_wait_for_death_sees_the_exit_and_is_bounded(tmp_path):
    """The stop waits for a real process: True once it has exited, False when the time is up
    (then JupyterHub's stop goes on to SIGTERM and SIGKILL)."""
    import signal
    import subprocess
    import sys

    sp = spawner(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                             "signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); "
                             "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        sp.proc, sp.pid = proc, proc.pid
        proc.send_signal(signal.SIGINT)  # ignored, as by a server that hangs in its clean-up
        assert asyncio.run(sp.wait_for_death(0.5)) is False
        proc.terminate()
        assert asyncio.run(asyncio.wait_for(sp.wait_for_death(60), 90)) is True
        assert proc.returncode == -signal.SIGTERM  # reaped by the poll
    finally:
        proc.kill()
        proc.wait(30)
