# JupyterHub configuration of the panosc-daas Helm chart.
#
# It reads the chart's values (mounted from the <release>-hub-config Secret at
# $DAAS_CHART_VALUES) and the catalogue and environments files next to it,
# and configures FacilityKubeSpawner, the proxy, the authenticator and the
# idle culler. Secrets arrive as environment variables from Kubernetes
# Secrets, never through the values. Change the chart's values, not this file;
# hub.extraConfig is appended at the end for anything else.
import os
import sys
from pathlib import Path

import yaml
from hub_ext.api import configure as configure_dataset_api
from hub_ext.sharing import TEMPLATES as daas_templates
from hub_ext.sharing import configure as configure_sharing

c = get_config()  # noqa: F821 (provided by JupyterHub's config loader)

CONFIG_DIR = Path(__file__).resolve().parent
values = yaml.safe_load(Path(os.environ.get("DAAS_CHART_VALUES", CONFIG_DIR / "secret" / "values.yaml")).read_text())
chart = values["chart"]
hub = values["hub"]
singleuser = values["singleuser"]
auth = values["auth"]
catalog = values["catalog"]
datasets = values["datasets"]
cull = values["cull"]

# -- hub and proxy --------------------------------------------------------------------
# The proxy runs in its own pod (proxy-api Service); the hub only talks to it.
base_url = hub["baseUrl"]
c.JupyterHub.base_url = base_url
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = f"http://{chart['hubService']}:8081"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://{chart['proxyApiService']}:8001"
# Servers keep running while the hub restarts (upgrades, config changes).
c.JupyterHub.cleanup_servers = False
c.JupyterHub.log_level = hub["logLevel"]
# CONFIGPROXY_AUTH_TOKEN, JPY_COOKIE_SECRET and JUPYTERHUB_CRYPT_KEY are read
# from the environment by JupyterHub itself.
if hub["db"]["type"] == "external":
    c.JupyterHub.db_url = os.environ["DAAS_DB_URL"]
else:
    c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
c.JupyterHub.upgrade_db = bool(hub["upgradeDb"])
c.JupyterHub.template_paths = [str(daas_templates)]  # the home page links to the Share page
# The options form's dataset search: a hub-managed service in the hub pod
# (port "datasets" of the hub Service), behind the custom:daas:datasets scope.
configure_dataset_api(c, config_file=__file__, port=8090, ip=chart["hubService"], bind_ip="0.0.0.0")
# Proposal sharing (its API and the Share page): a hub-managed service too
# (port "share"), behind the custom:daas:share scope.
configure_sharing(c, config_file=__file__, port=8091, ip=chart["hubService"], bind_ip="0.0.0.0")

# -- login ----------------------------------------------------------------------------
c.Authenticator.admin_users = set(hub["adminUsers"])
if auth["type"] == "shared-password":
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = os.environ["DAAS_SHARED_PASSWORD"]
    if os.environ.get("DAAS_ADMIN_PASSWORD"):
        c.SharedPasswordAuthenticator.admin_password = os.environ["DAAS_ADMIN_PASSWORD"]
    c.Authenticator.allow_all = bool(auth["sharedPassword"]["allowAll"])
    c.Authenticator.allowed_users = set(auth["sharedPassword"]["allowedUsers"])
elif auth["type"] == "oauth":
    oauth = auth["oauth"]
    c.JupyterHub.authenticator_class = oauth["authenticatorClass"]
    if oauth["clientId"]:
        c.OAuthenticator.client_id = oauth["clientId"]
    if os.environ.get("OAUTH_CLIENT_SECRET"):
        c.OAuthenticator.client_secret = os.environ["OAUTH_CLIENT_SECRET"]
    if oauth["callbackUrl"]:
        c.OAuthenticator.oauth_callback_url = oauth["callbackUrl"]
# Pass-through traitlets by class name (authenticator options the chart does not name).
for section, traits in auth["config"].items():
    c[section].update(traits)

# -- catalogue, environments, datasets --------------------------------------------------
c.JupyterHub.spawner_class = "facility-kube"
c.FacilitySpawner.catalog_class = catalog["type"]
if catalog["type"] == "yaml":
    c.YamlCatalog.path = str(CONFIG_DIR / "catalog.yaml")
elif catalog["type"] == "scicat":
    scicat = catalog["scicat"]
    c.SciCatCatalog.url = scicat["url"]
    # The token arrives as $SCICAT_TOKEN, which SciCatCatalog reads itself.
    if scicat["facility"]:
        c.SciCatCatalog.facility = scicat["facility"]
    c.SciCatCatalog.path_map = scicat["pathMap"]
    c.SciCatCatalog.timeout = float(scicat["timeout"])
    c.SciCatCatalog.cache_ttl = float(scicat["cacheTtl"])
    c.SciCatCatalog.verify_tls = bool(scicat["verifyTls"])
for section, traits in catalog["config"].items():
    c[section].update(traits)

c.FacilitySpawner.environments_file = str(CONFIG_DIR / "environments.yaml")
c.FacilitySpawner.allowed_data_roots = [datasets["root"]]
c.FacilityKubeSpawner.dataset_volume = chart["datasetVolume"]
c.FacilityKubeSpawner.dataset_root = datasets["root"]
c.FacilityKubeSpawner.dataset_mount_root = datasets["mountRoot"]
c.FacilityKubeSpawner.home_dir = singleuser["homeDir"]

# -- user server pods -----------------------------------------------------------------
c.KubeSpawner.namespace = os.environ.get("POD_NAMESPACE", chart["namespace"])
c.KubeSpawner.image = chart["singleuserImage"]
c.KubeSpawner.image_pull_policy = singleuser["image"]["pullPolicy"]
c.KubeSpawner.image_pull_secrets = list(values["imagePullSecrets"])
# The network policy for user servers selects the chart's selector labels.
# KubeSpawner's common_labels win over extra_labels, so they are set there.
user_labels = dict(chart["selectorLabels"])
c.KubeSpawner.component_label = user_labels.pop("app.kubernetes.io/component")
c.KubeSpawner.common_labels = {
    **user_labels,
    "app.kubernetes.io/managed-by": "kubespawner",
    "app": "jupyterhub",
    "heritage": "jupyterhub",
}
c.KubeSpawner.uid = singleuser["uid"]
c.KubeSpawner.fs_gid = singleuser["fsGid"]
c.KubeSpawner.allow_privilege_escalation = False
c.KubeSpawner.container_security_context = {
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# User code gets no Kubernetes API credentials.
c.KubeSpawner.automount_service_account_token = False
c.KubeSpawner.cpu_limit = float(singleuser["cpu"]["limit"])
c.KubeSpawner.cpu_guarantee = float(singleuser["cpu"]["guarantee"])
c.KubeSpawner.mem_limit = str(singleuser["memory"]["limit"])
c.KubeSpawner.mem_guarantee = str(singleuser["memory"]["guarantee"])
c.KubeSpawner.start_timeout = int(singleuser["startTimeout"])
c.KubeSpawner.environment = {k: str(v) for k, v in singleuser["extraEnv"].items()}
c.KubeSpawner.node_selector = dict(singleuser["nodeSelector"])
c.KubeSpawner.tolerations = list(singleuser["tolerations"])
storage = singleuser["storage"]
if storage["type"] == "dynamic":
    c.KubeSpawner.storage_pvc_ensure = True
    c.KubeSpawner.pvc_name_template = "claim-{username}{servername}"
    c.KubeSpawner.storage_capacity = str(storage["capacity"])
    c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
    if storage["storageClass"]:
        c.KubeSpawner.storage_class = storage["storageClass"]
    c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
    c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": singleuser["homeDir"]}]
else:
    c.KubeSpawner.storage_pvc_ensure = False

# -- idle culler ----------------------------------------------------------------------
if cull["enabled"]:
    command = [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        f"--url=http://127.0.0.1:8081{base_url.rstrip('/')}/hub/api",
        f"--timeout={int(cull['timeout'])}",
        f"--cull-every={int(cull['every'])}",
        f"--concurrency={int(cull['concurrency'])}",
    ]
    if cull["maxAge"]:
        command.append(f"--max-age={int(cull['maxAge'])}")
    if not cull["adminUsers"]:
        command.append("--cull-admin-users=false")
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    if cull["users"]:
        command.append("--cull-users=true")
        scopes.append("admin:users")
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), {"name": "idle-culler", "command": command}]
    c.JupyterHub.load_roles = [
        *c.JupyterHub.get("load_roles", []),
        {"name": "idle-culler", "scopes": scopes, "services": ["idle-culler"]},
    ]

# -- escape hatch -----------------------------------------------------------------------
for key in sorted(hub["extraConfig"]):
    exec(compile(hub["extraConfig"][key], f"<hub.extraConfig.{key}>", "exec"), globals())
