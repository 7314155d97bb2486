"""FacilityKubeSpawner: the pod it would create, validated against the Kubernetes schemas.

No cluster: KubeSpawner reads a Kubernetes config when it is constructed, so
the tests point it at a kubeconfig naming a server that is never contacted,
and replace only ``KubeSpawner._start`` (the part that talks to the API
server) with a recorder that takes the same first steps — load the user
options, build the pod manifest — and stops there. Everything before it
(validation, environment, session preparation) is the real ``start()``.
"""

import asyncio
import json
import subprocess
import sys
from types import SimpleNamespace
from unittest.mock import Mock

import kubernetes_validate
import pytest
import yaml
from jupyterhub.objects import Hub, Server
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config import kube_config
from kubespawner import clients as kube_clients
from traitlets import TraitError
from traitlets.config import Config

import hub_ext.spawners.base as spawner_module
from hub_ext.spawners.kube import SESSION_ANNOTATION, FacilityKubeSpawner
from hub_ext.spawners import SpawnRefused

K8S_VERSION = kubernetes_validate.latest_version()
GiB = 1024**3

DATASETS = [
    {
        "pid": "xfel:p002120:r0029",
        "title": "Lysozyme SFX, AGIPD-1M, run 29",
        "facility": "EuXFEL",
        "instrument": "SPB/SFX",
        "proposal": "2120",
        "path": "/data/exfel/p002120/r0029",
        "access_groups": ["p2120"],
        "techniques": ["serial crystallography"],
    },
    {
        "pid": "ill:9-10-1234",
        "title": "Public ILL reference run, $(HOME) ${not} {expanded}",
        "facility": "ILL",
        "proposal": "9-10-1234",
        "path": "/data/ill/9-10-1234",
        "public": True,
    },
    {
        "pid": "xfel:p900001:r0001",
        "title": "Somebody else's proposal",
        "facility": "EuXFEL",
        "path": "/data/exfel/p900001/r0001",
        "access_groups": ["p900001"],
    },
    {"pid": "xfel:elsewhere", "title": "Outside", "facility": "EuXFEL", "path": "/srv/other/r1", "public": True},
    # A sibling sharing the root's prefix: /database is not below /data.
    {"pid": "xfel:prefix", "title": "Prefix", "facility": "EuXFEL", "path": "/database/r1", "public": True},
    {"pid": "xfel:everything", "title": "Whole volume", "facility": "EuXFEL", "path": "/data", "public": True},
]

ENVIRONMENTS = [
    {
        "slug": "euxfel-mx",
        "display_name": "EuXFEL crystallography",
        "facilities": ["EuXFEL"],
        "image": "registry.example.org/daas/euxfel-mx:2026.11",
        "default_url": "/lab/tree/notebooks/nxmx_conversion.ipynb",
        "cpu_limit": 4,
        "mem_limit": "16G",
        "cpu_guarantee": 1,
        "mem_guarantee": "4G",
    },
    {
        "slug": "generic",
        "display_name": "Generic Python",
        "image": "registry.example.org/daas/generic:2026.11",
        "default_url": "/lab",
    },
    {"slug": "local-only", "display_name": "Local only", "cmd": "jupyterhub-singleuser"},
]

NFS = {"nfs": {"server": "nfs.example.org", "path": "/exports/data", "readOnly": True}}
VOLUME_SOURCES = {
    "nfs": NFS,
    "pvc": {"persistentVolumeClaim": {"claimName": "facility-data", "readOnly": True}},
    "hostPath": {"hostPath": {"path": "/gpfs/exfel/exp", "type": "Directory"}},
    "csi": {"csi": {"driver": "cvmfs.csi.cern.ch", "readOnly": True, "volumeAttributes": {"repository": "data"}}},
}


class MockUser(Mock):
    """The parts of a JupyterHub user the spawners read (as kubespawner's own tests do)."""

    name = "alice"
    admin = False
    id = 7
    server = Server()

    def __init__(self, groups=(), **kwargs):
        super().__init__()
        self.groups = [SimpleNamespace(name=g) for g in groups]
        for key, value in kwargs.items():
            setattr(self, key, value)

    @property
    def escaped_name(self):
        return self.name

    @property
    def url(self):
        return self.server.url


@pytest.fixture
async def kube_offline(tmp_path_factory, monkeypatch):
    """A kubeconfig for a cluster that is never contacted; undone afterwards."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "nobody", "user": {"token": "unused"}}],
                "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "nobody"}}],
                "current-context": "offline",
            }
        )
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # What $KUBECONFIG sets; read by kubernetes_asyncio at import, hence patched.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.setattr(Configuration, "_default", None)
    kube_clients.load_config.cache_clear()
    yield path
    kube_clients.load_config.cache_clear()
    # shared_client() leaves a task per event loop that owns the API client.
    tasks = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "close_client_task"]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def kube_files(tmp_path, monkeypatch):
    """Real YAML catalogue and environments files; fresh backend caches per test."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": DATASETS}))
    environments = tmp_path / "environments.yaml"
    environments.write_text(yaml.safe_dump({"environments": ENVIRONMENTS}))
    monkeypatch.setattr(spawner_module, "_CATALOGS", {})
    monkeypatch.setattr(spawner_module, "_ENV_FILES", {})
    return catalog, environments


@pytest.fixture
def kube_recorder(monkeypatch):
    """Stand in for the API-server half of KubeSpawner._start; record the pods built."""
    calls = {"manifests": [], "get_pod_manifest": 0}
    real_get_pod_manifest = FacilityKubeSpawner.get_pod_manifest

    async def counting_get_pod_manifest(self):
        calls["get_pod_manifest"] += 1
        return await real_get_pod_manifest(self)

    async def offline_start(self):
        await self.load_user_options()
        pod = await self.get_pod_manifest()
        calls["manifests"].append(ApiClient().sanitize_for_serialization(pod))
        return ("127.0.0.1", self.port)

    monkeypatch.setattr(FacilityKubeSpawner, "get_pod_manifest", counting_get_pod_manifest)
    monkeypatch.setattr(FacilityKubeSpawner, "_start", offline_start)
    return calls


@pytest.fixture
def make_spawner(kube_offline, kube_files):
    catalog, environments = kube_files

    def make(groups=("p2120",), **kube_config_values):
        c = Config()
        c.YamlCatalog.path = str(catalog)
        c.FacilitySpawner.environments_file = str(environments)
        c.FacilityKubeSpawner.dataset_volume = NFS
        c.FacilityKubeSpawner.dataset_root = "/data"
        for key, value in kube_config_values.items():
            setattr(c.FacilityKubeSpawner, key, value)
        return FacilityKubeSpawner(config=c, user=MockUser(groups=groups), hub=Hub())

    return make


async def spawn(spawner, dataset, environment):
    spawner.user_options = {"dataset": dataset, "environment": environment}
    return await spawner.start()


def validate(pod):
    """Strict schema validation (unknown fields are errors) for a current Kubernetes."""
    assert kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def container_env(pod):
    (container,) = pod["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def mounts_by_path(pod):
    (container,) = pod["spec"]["containers"]
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def volumes_by_name(pod):
    return {v["name"]: v for v in pod["spec"]["volumes"]}


async def test_pod_mounts_dataset_read_only_with_environment(make_spawner, kube_recorder):
    spawner = make_spawner()
    await spawn(spawner, "xfel:p002120:r0029", "euxfel-mx")
    (pod,) = kube_recorder["manifests"]
    validate(pod)

    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.org/daas/euxfel-mx:2026.11"
    mount = mounts_by_path(pod)["/data/xfel-p002120-r0029"]
    assert mount["readOnly"] is True
    assert mount["subPath"] == "exfel/p002120/r0029"
    volume = volumes_by_name(pod)[mount["name"]]
    assert volume["nfs"] == NFS["nfs"]

    resources = container["resources"]
    assert float(resources["limits"]["cpu"]) == 4
    assert int(resources["limits"]["memory"]) == 16 * GiB
    assert float(resources["requests"]["cpu"]) == 1
    assert int(resources["requests"]["memory"]) == 4 * GiB

    env = container_env(pod)
    assert env["DAAS_DATASET_PID"] == "xfel:p002120:r0029"
    assert env["DAAS_DATASET_PATH"] == "/data/xfel-p002120-r0029"
    assert env["DAAS_ENVIRONMENT"] == "euxfel-mx"
    assert env["DAAS_SESSION"] == "/home/jovyan/.daas/session.json"
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/lab/tree/notebooks/nxmx_conversion.ipynb"


async def test_session_manifest_is_projected_from_annotation(make_spawner, kube_recorder):
    spawner = make_spawner()
    await spawn(spawner, "ill:9-10-1234", "generic")
    (pod,) = kube_recorder["manifests"]
    validate(pod)

    session_dir = mounts_by_path(pod)["/home/jovyan/.daas"]
    assert session_dir["readOnly"] is True
    assert "subPath" not in session_dir  # subPath mounts of downward API files never update
    (item,) = volumes_by_name(pod)[session_dir["name"]]["downwardAPI"]["items"]
    assert item["path"] == "session.json"
    assert item["fieldRef"]["fieldPath"] == f"metadata.annotations['{SESSION_ANNOTATION}']"

    manifest = json.loads(pod["metadata"]["annotations"][SESSION_ANNOTATION])
    assert manifest["dataset"]["pid"] == "ill:9-10-1234"
    # Braces and $(...) reach the pod verbatim: no template or env expansion.
    assert manifest["dataset"]["title"] == DATASETS[1]["title"]
    assert manifest["dataset_path"] == "/data/ill-9-10-1234"
    assert manifest["environment"]["slug"] == "generic"
    assert manifest["user"] == "alice"
    assert manifest["started"].endswith("Z")


async def test_validation_is_strict(make_spawner, kube_recorder):
    # Guards the check itself: a misspelt field (silently dropped by a real
    # API server, so the mount would be writable) must fail validation.
    spawner = make_spawner()
    await spawn(spawner, "xfel:p002120:r0029", "euxfel-mx")
    (pod,) = kube_recorder["manifests"]
    mount = mounts_by_path(pod)["/data/xfel-p002120-r0029"]
    mount["readonly"] = mount.pop("readOnly")
    with pytest.raises(kubernetes_validate.ValidationError, match="readonly"):
        validate(pod)


@pytest.mark.parametrize("source", sorted(VOLUME_SOURCES))
async def test_any_volume_source_gives_a_valid_pod(make_spawner, kube_recorder, source):
    spawner = make_spawner(dataset_volume=VOLUME_SOURCES[source], dataset_volume_name="facility-data")
    await spawn(spawner, "xfel:p002120:r0029", "euxfel-mx")
    (pod,) = kube_recorder["manifests"]
    validate(pod)
    volume = volumes_by_name(pod)["facility-data"]
    assert {k: v for k, v in volume.items() if k != "name"} == VOLUME_SOURCES[source]
    assert mounts_by_path(pod)["/data/xfel-p002120-r0029"]["name"] == "facility-data"


async def test_dataset_at_volume_root_is_mounted_without_subpath(make_spawner, kube_recorder):
    spawner = make_spawner()
    await spawn(spawner, "xfel:everything", "generic")
    (pod,) = kube_recorder["manifests"]
    validate(pod)
    mount = mounts_by_path(pod)["/data/xfel-everything"]
    assert "subPath" not in mount and mount["readOnly"] is True


async def test_restarts_do_not_accumulate_mounts_or_resources(make_spawner, kube_recorder):
    home = {"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}}
    home_mount = {"name": "home", "mountPath": "/home/jovyan"}
    spawner = make_spawner(volumes=[home], volume_mounts=[home_mount], cpu_limit=2.0)
    await spawn(spawner, "xfel:p002120:r0029", "euxfel-mx")
    await spawn(spawner, "ill:9-10-1234", "generic")
    first, second = kube_recorder["manifests"]
    for pod in (first, second):
        validate(pod)

    assert sorted(volumes_by_name(second)) == ["daas-dataset", "daas-session", "home"]
    assert sorted(mounts_by_path(second)) == ["/data/ill-9-10-1234", "/home/jovyan", "/home/jovyan/.daas"]
    assert mounts_by_path(second)["/data/ill-9-10-1234"]["subPath"] == "ill/9-10-1234"
    assert volumes_by_name(second)["home"]["persistentVolumeClaim"]["claimName"] == "claim-alice"
    # The configured lists themselves are untouched.
    assert spawner.volumes == [home] and spawner.volume_mounts == [home_mount]

    (container,) = second["spec"]["containers"]
    assert container["image"] == "registry.example.org/daas/generic:2026.11"
    # "generic" sets no resources: the configured cpu_limit, not euxfel-mx's 4.
    assert float(container["resources"]["limits"]["cpu"]) == 2
    assert "memory" not in container["resources"]["limits"]
    assert container_env(second)["JUPYTERHUB_DEFAULT_URL"] == "/lab"


@pytest.mark.parametrize(
    "dataset, environment, status, message",
    [
        ("../../etc", "generic", 400, "malformed"),
        ("xfel:p900001:r0001", "euxfel-mx", 403, "do not have access"),
        ("xfel:p404:r0404", "euxfel-mx", 403, "do not have access"),
        ("xfel:elsewhere", "euxfel-mx", 403, "outside the facility's data volume"),
        ("xfel:prefix", "euxfel-mx", 403, "outside the facility's data volume"),
        ("ill:9-10-1234", "euxfel-mx", 400, "does not support ILL data"),
        ("xfel:p002120:r0029", "local-only", 400, "no container image"),
        ("xfel:p002120:r0029", "nonexistent", 400, "Unknown software environment"),
    ],
)
async def test_refused_before_any_pod_is_built(make_spawner, kube_recorder, dataset, environment, status, message):
    spawner = make_spawner()
    with pytest.raises(SpawnRefused) as refused:
        await spawn(spawner, dataset, environment)
    assert refused.value.status_code == status
    assert message in refused.value.message
    assert kube_recorder["get_pod_manifest"] == 0 and kube_recorder["manifests"] == []
    assert spawner._start_future is None  # KubeSpawner.start was never reached


async def test_unconfigured_data_volume_is_refused(make_spawner, kube_recorder):
    spawner = make_spawner(dataset_volume={})
    with pytest.raises(SpawnRefused, match="dataset_volume") as refused:
        await spawn(spawner, "xfel:p002120:r0029", "euxfel-mx")
    assert refused.value.status_code == 503
    assert kube_recorder["get_pod_manifest"] == 0


async def test_volume_name_clash_is_refused(make_spawner, kube_recorder):
    clash = {"name": "daas-dataset", "emptyDir": {}}
    spawner = make_spawner(volumes=[clash])
    with pytest.raises(SpawnRefused, match="used twice"):
        await spawn(spawner, "xfel:p002120:r0029", "euxfel-mx")
    assert kube_recorder["get_pod_manifest"] == 0


@pytest.mark.parametrize(
    "trait, value",
    [
        ("dataset_volume", {"name": "data", "nfs": {"server": "s", "path": "/"}}),
        ("dataset_volume", {"nfs": {"server": "s", "path": "/"}, "hostPath": {"path": "/"}}),
        ("dataset_volume", {"nfs": "nfs.example.org:/exports"}),
        ("dataset_root", "data"),
        ("dataset_mount_root", "mnt/data"),
        ("home_dir", "jovyan"),
    ],
)
async def test_bad_configuration_is_rejected(make_spawner, trait, value):
    with pytest.raises(TraitError, match=trait):
        make_spawner(**{trait: value})


async def test_session_manifest_must_not_shadow_home(make_spawner, kube_recorder):
    spawner = make_spawner()
    spawner.session_manifest_name = "session.json"
    with pytest.raises(SpawnRefused, match="subdirectory"):
        await spawn(spawner, "xfel:p002120:r0029", "euxfel-mx")
    assert kube_recorder["get_pod_manifest"] == 0


def test_import_needs_no_kubernetes(tmp_path):
    code = (
        "import sys, hub_ext, hub_ext.spawners, hub_ext.spawners.local, hub_ext.catalogs\n"
        "assert 'kubespawner' not in sys.modules, 'kubespawner imported'\n"
        "assert 'kubernetes_asyncio' not in sys.modules, 'kubernetes client imported'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "missing")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path, timeout=60)
