"""The chart's jupyterhub_config.py, run by JupyterHub's own config loader on rendered values.

The hub's mounts (ConfigMap, values Secret) are written to a temporary
directory and its environment is taken from the rendered Deployment, so a
variable the config needs but the Deployment does not set fails here. Then
FacilityKubeSpawner, loaded by its entry point name as the hub does, builds
the pod for a sample user and dataset from that configuration, and the pod is
validated strictly.
"""

import base64
import os
from importlib.metadata import entry_points, version

import kubernetes_validate
import pytest
from jupyterhub.app import JupyterHub
from jupyterhub.objects import Hub
from jupyterhub.proxy import ConfigurableHTTPProxy
from kubernetes_asyncio.client import ApiClient

from tests.hub.test_kube_spawner import MockUser, kube_offline  # noqa: F401 (fixture)

from .charttools import NAMESPACE, RELEASE, render
from .conftest import VALUES_FILES
from .test_chart_render import K8S_VERSIONS

FULLNAME = f"{RELEASE}-panosc-daas"


def spawner_class(name):
    (entry,) = entry_points(group="jupyterhub.spawners", name=name)
    return entry.load()


def hub_environment(rendered, mounts):
    """The hub container's environment as Kubernetes would set it, paths mapped into ``mounts``."""
    (container,) = rendered.one("Deployment", "hub")["spec"]["template"]["spec"]["containers"]
    env = {}
    for var in container["env"]:
        if "value" in var:
            value = var["value"]
            # The deepest mount holding the path, as in the container.
            for mount_path in sorted(mounts, key=len, reverse=True):
                if value.startswith(mount_path + "/"):
                    value = str(mounts[mount_path]) + value[len(mount_path):]
                    break
            env[var["name"]] = value
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.namespace"
            env[var["name"]] = NAMESPACE
            continue
        ref = source["secretKeyRef"]
        generated = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == ref["name"]]
        if generated and ref["key"] in generated[0]["data"]:
            env[var["name"]] = base64.b64decode(generated[0]["data"][ref["key"]]).decode()
        elif not ref.get("optional"):
            # A Secret the administrator creates (existingSecret, database URL, client secret).
            env[var["name"]] = f"secret:{ref['name']}/{ref['key']}"
    return env


@pytest.fixture
def hub_config(tmp_path, monkeypatch):
    """Load the chart's jupyterhub_config.py for a render; returns (config, env, config dir)."""

    def load(rendered):
        (container,) = rendered.one("Deployment", "hub")["spec"]["template"]["spec"]["containers"]
        volumes = {v["name"]: v for v in rendered.one("Deployment", "hub")["spec"]["template"]["spec"]["volumes"]}
        mounts = {}
        for mount in container["volumeMounts"]:
            local = tmp_path / mount["name"]
            local.mkdir(exist_ok=True)
            mounts[mount["mountPath"]] = local
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                data = rendered.get("ConfigMap", volume["configMap"]["name"])["data"]
            elif "secret" in volume:
                data = rendered.secret_data(volume["secret"]["secretName"])
            else:
                continue
            for key, text in data.items():
                (local / key).write_text(text)
        env = hub_environment(rendered, mounts)
        for name in [n for n in os.environ if n.startswith(("DAAS_", "OAUTH_", "SCICAT_"))]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config_dir = mounts["/usr/local/etc/jupyterhub"]
        app = JupyterHub()
        app.load_config_file(str(config_dir / "jupyterhub_config.py"))
        return app.config, env, config_dir

    return load


def test_hub_and_proxy_wiring(renders, hub_config):
    r = renders(None)
    c, env, _ = hub_config(r)
    hub_service = r.one("Service", "hub")
    port, datasets_port, share_port = hub_service["spec"]["ports"]
    assert datasets_port["name"] == "datasets"  # the dataset search service, for the proxy
    assert share_port["name"] == "share"  # the sharing service (API and Share page), for the proxy
    assert c.JupyterHub.hub_connect_url == f"http://{hub_service['metadata']['name']}:{port['port']}"
    assert c.JupyterHub.hub_bind_url == f"http://:{port['port']}"
    api_service = r.get("Service", f"{FULLNAME}-proxy-api")
    assert c.ConfigurableHTTPProxy.api_url == f"http://{api_service['metadata']['name']}:8001"
    assert c.ConfigurableHTTPProxy.should_start is False
    proxy_args = r.one("Deployment", "proxy")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"--default-target={c.JupyterHub.hub_connect_url}" in proxy_args
    # Hub and proxy share one token; JupyterHub reads it (and the cookie secret) from the environment.
    assert len(env["CONFIGPROXY_AUTH_TOKEN"]) == 64 and len(env["JPY_COOKIE_SECRET"]) == 64
    assert c.JupyterHub.db_url == "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
    assert c.JupyterHub.authenticator_class == "shared-password"
    assert c.SharedPasswordAuthenticator.user_password == env["DAAS_SHARED_PASSWORD"]
    assert c.Authenticator.allow_all is True


def test_idle_culler_service(renders, hub_config):
    c, _, _ = hub_config(renders(None))
    (service,) = [s for s in c.JupyterHub.services if s["name"] not in ("daas-datasets", "daas-share")]
    assert service["name"] == "idle-culler"
    command = service["command"]
    assert command[1:3] == ["-m", "jupyterhub_idle_culler"]
    assert "--timeout=3600" in command and "--cull-every=600" in command
    assert "--url=http://127.0.0.1:8081/hub/api" in command
    assert not any(a.startswith(("--max-age", "--cull-users")) for a in command)
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler"]
    assert role["services"] == ["idle-culler"]
    assert set(role["scopes"]) == {"list:users", "read:users:activity", "read:servers", "delete:servers"}


def test_idle_culler_accepts_its_command(chart, hub_config):
    from jupyterhub_idle_culler import IdleCuller

    values = {"cull": {"timeout": 7200, "every": 300, "maxAge": 86400, "users": True, "adminUsers": False}}
    c, _, _ = hub_config(render(chart, values))
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    culler = IdleCuller()
    culler.parse_command_line(service["command"][3:])
    assert (culler.timeout, culler.cull_every, culler.max_age) == (7200, 300, 86400)
    assert culler.cull_users is True and culler.cull_admin_users is False
    assert culler.url == "http://127.0.0.1:8081/hub/api"
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler"]
    assert "admin:users" in role["scopes"]  # deleting users needs it


def test_culler_off_and_base_url(renders, hub_config):
    c, _, _ = hub_config(renders("no-netpol"))
    assert [s["name"] for s in c.JupyterHub.services] == ["daas-datasets", "daas-share"]  # no culler
    c, _, _ = hub_config(renders("ingress-tls"))
    assert c.JupyterHub.base_url == "/daas/"
    (culler,) = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    assert "--url=http://127.0.0.1:8081/daas/hub/api" in culler["command"]


def test_oidc_pass_through(renders, hub_config):
    c, env, _ = hub_config(renders("oidc"))
    assert c.JupyterHub.authenticator_class == "generic-oauth"
    assert c.OAuthenticator.client_id == "daas-portal"
    assert c.OAuthenticator.client_secret == env["OAUTH_CLIENT_SECRET"] == "secret:keycloak-client/secret"
    assert c.OAuthenticator.oauth_callback_url == "https://daas.example.org/hub/oauth_callback"
    assert c.GenericOAuthenticator.username_claim == "preferred_username"
    assert c.GenericOAuthenticator.allowed_groups == ["daas-users"]
    assert c.Authenticator.admin_users == {"operator"}
    assert "DAAS_SHARED_PASSWORD" not in env
    # Every passed-through option is a real trait of the authenticator the name resolves to.
    (entry,) = entry_points(group="jupyterhub.authenticators", name="generic-oauth")
    authenticator = entry.load()
    traits = authenticator.class_traits(config=True)
    assert set(c.GenericOAuthenticator) <= set(traits)


def test_scicat_catalogue(renders, hub_config):
    c, env, _ = hub_config(renders("scicat"))
    assert c.FacilitySpawner.catalog_class == "scicat"
    assert c.SciCatCatalog.url == "https://scicat.example.org/api/v3"
    assert c.SciCatCatalog.path_map == {"/gpfs/exfel/exp": "/data"}
    assert env["SCICAT_TOKEN"] == "secret:scicat-token/token"
    assert "path" not in c.YamlCatalog


def test_external_database_and_extra_config(renders, hub_config):
    c, env, _ = hub_config(renders("external-db"))
    assert c.JupyterHub.db_url == env["DAAS_DB_URL"] == "secret:hub-db/url"
    assert c.KubeSpawner.start_timeout == 600  # hub.extraConfig runs last


def test_spawner_configuration(renders, hub_config):
    r = renders("nfs")
    c, _, config_dir = hub_config(r)
    assert c.JupyterHub.spawner_class == "facility-kube"
    assert c.FacilitySpawner.catalog_class == "yaml"
    assert c.YamlCatalog.path == str(config_dir / "catalog.yaml")
    assert c.FacilitySpawner.environments_file == str(config_dir / "environments.yaml")
    assert c.FacilityKubeSpawner.dataset_volume == r.values["datasets"]["volume"]
    assert c.FacilityKubeSpawner.dataset_root == "/gpfs/exfel/exp"
    assert c.FacilitySpawner.allowed_data_roots == ["/gpfs/exfel/exp"]
    assert c.KubeSpawner.namespace == NAMESPACE
    assert c.KubeSpawner.storage_pvc_ensure is False
    # The dataset search API the options form calls is a hub-managed service
    # behind its custom scope, reachable through the hub Service.
    service = next(s for s in c.JupyterHub.services if s["name"] == "daas-datasets")
    assert service["url"] == c.JupyterHub.hub_connect_url.replace(":8081", ":8090")
    assert service["environment"]["DAAS_API_BIND_IP"] == "0.0.0.0"
    assert "custom:daas:datasets" in c.JupyterHub.custom_scopes
    (user_role,) = [role for role in c.JupyterHub.load_roles if role["name"] == "user"]
    assert "custom:daas:datasets!user" in user_role["scopes"]


def test_sharing_is_a_service_not_an_extra_handler(renders, hub_config):
    """Proposal sharing runs as a hub-managed service: no deprecated extra_handlers, its port wired through."""
    r = renders(None)
    c, _, _ = hub_config(r)
    assert not c.JupyterHub.get("extra_handlers")
    service = next(s for s in c.JupyterHub.services if s["name"] == "daas-share")
    assert service["url"] == c.JupyterHub.hub_connect_url.replace(":8081", ":8091")
    assert service["command"][1:3] == ["-m", "hub_ext.sharing_service"]
    assert service["oauth_client_allowed_scopes"] == ["custom:daas:share!user"]  # the page's login: own sessions only
    (user_role,) = [role for role in c.JupyterHub.load_roles if role["name"] == "user"]
    assert {"self", "custom:daas:share!user", "custom:daas:datasets!user"} <= set(user_role["scopes"])
    assert not any(s == "shares" or s.startswith("shares!") for s in user_role["scopes"])  # users share only through it
    ports = r.one("Deployment", "hub")["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "share", "containerPort": 8091} in ports


async def build_pod(config, monkeypatch, dataset, environment, groups):
    cls = spawner_class("facility-kube")
    pods = []

    async def offline_start(self):
        await self.load_user_options()
        pod = ApiClient().sanitize_for_serialization(await self.get_pod_manifest())
        if self.storage_pvc_ensure:
            pod["home_claim"] = ApiClient().sanitize_for_serialization(self.get_pvc_manifest())
        pods.append(pod)
        return ("127.0.0.1", self.port)

    monkeypatch.setattr(cls, "_start", offline_start)
    spawner = cls(config=config, user=MockUser(groups=groups), hub=Hub())
    spawner.user_options = {"dataset": dataset, "environment": environment}
    await spawner.start()
    (pod,) = pods
    return pod


@pytest.mark.parametrize(
    "values, dataset, environment, groups, mount_path, sub_path",
    [
        (None, "demo:public:r0001", "daas", (), "/data/demo-public-r0001", "demo/r0001"),
        ("nfs", "xfel:p002120:r0029", "euxfel-mx", ("p2120",), "/data/xfel-p002120-r0029", "SPB/p002120/raw/r0029"),
        ("pvc", "demo:public:r0001", "daas", (), "/mnt/datasets/demo-public-r0001", "demo/r0001"),
    ],
)
async def test_user_pod_from_chart_configuration(
    renders, hub_config, kube_offline, monkeypatch, values, dataset, environment, groups, mount_path, sub_path  # noqa: F811
):
    r = renders(values)
    config, _, _ = hub_config(r)
    pod = await build_pod(config, monkeypatch, dataset, environment, groups)
    claim = pod.pop("home_claim", None)
    for kube_version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, kube_version, strict=True)
        if claim:
            kubernetes_validate.validate(claim, kube_version, strict=True)

    spec = pod["spec"]
    (container,) = spec["containers"]
    # The same lock-down as the chart's own containers (minus the read-only root: users install packages).
    merged = {**spec.get("securityContext", {}), **container["securityContext"]}
    assert merged["runAsNonRoot"] is True and merged["runAsUser"] == 1000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    dataset_mount = mounts[mount_path]
    assert dataset_mount["readOnly"] is True and dataset_mount["subPath"] == sub_path
    expected_volume = r.values.get("datasets", {}).get("volume") or {"emptyDir": {}}
    assert {k: v for k, v in volumes[dataset_mount["name"]].items() if k != "name"} == expected_volume
    # Every mount of data the user did not create is read-only.
    for mount in container["volumeMounts"]:
        assert mount.get("readOnly") is True or mount["name"] == "home", mount

    if values == "nfs":
        assert claim is None
        assert container["image"] == "registry.example.org/daas/euxfel-mx:2026.11"
        assert "home" not in volumes
    else:
        assert container["image"] == f"ghcr.io/panosc-eu/daas-singleuser:{version('panosc-daas')}"
        assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "claim-alice"
        assert claim["metadata"]["name"] == "claim-alice"
        assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
        assert claim["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert mounts["/home/jovyan"]["name"] == "home"
    if values == "pvc":
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]

    # The network policy for user servers selects this pod, and the hub's admits it.
    user_policy = r.get("NetworkPolicy", f"{FULLNAME}-singleuser")
    assert user_policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    hub_policy = r.get("NetworkPolicy", f"{FULLNAME}-hub")
    assert any(
        peer["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        for peer in hub_policy["spec"]["ingress"][0]["from"]
    )


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda n: n or "defaults")
async def test_every_config_option_is_a_real_trait(renders, hub_config, kube_offline, values):  # noqa: F811
    """No option the chart sets is misspelt or aimed at the wrong class (traitlets would only warn)."""
    c, _, _ = hub_config(renders(values))
    spawner = spawner_class(c.JupyterHub.spawner_class)(config=c, user=MockUser(), hub=Hub())
    (auth_entry,) = entry_points(group="jupyterhub.authenticators", name=c.JupyterHub.authenticator_class)
    classes = [JupyterHub, ConfigurableHTTPProxy, auth_entry.load(), type(spawner), type(spawner.catalog)]
    for section, options in c.items():
        owners = [cls for cls in classes if section in {k.__name__ for k in cls.__mro__}]
        assert owners, f"c.{section}: no class of this hub reads it"
        traits = owners[0].class_traits(config=True)
        unknown = set(options) - set(traits)
        assert not unknown, f"c.{section}: {sorted(unknown)}"
