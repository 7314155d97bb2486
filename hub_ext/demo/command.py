"""``daas demo``: a real JupyterHub with the facility spawner on this machine.

First run: generate demo datasets (EuXFEL-format runs and one other
facility's scans), a YAML catalogue over them with access groups, a few
environments, and a hub configuration; later runs reuse them. Then start
JupyterHub + configurable-http-proxy on http://127.0.0.1:8000 with local
single-user servers, and stop everything on Ctrl-C.
"""

import contextlib
import hmac
import json
import os
import secrets
import shutil
import signal
from pathlib import Path

import yaml
from jupyterhub.auth import Authenticator
from traitlets import Dict

from ..files import write_atomic
from .hubprocess import HubProcess, check_ports_free, free_port

DEMO_USERS = {
    # name: (password, groups, admin)
    "alice": ("alice-xfel", ["p2120", "p2121"], False),
    "bob": ("bob-petra", ["petra-p11", "p900001"], False),
    "dana": ("dana-xfel", ["p2120"], False),  # alice's colleague on proposal 2120: sessions can be shared
    "admin": ("admin-daas", [], True),
}


class DemoAuthenticator(Authenticator):
    """Username + password from configuration; for the demo and the tests only."""

    passwords = Dict(help="username -> password").tag(config=True)

    async def authenticate(self, handler, data):
        name = (data or {}).get("username", "")
        expected = self.passwords.get(name)
        given = (data or {}).get("password", "")
        if expected is not None and hmac.compare_digest(expected.encode(), given.encode()):
            return name
        return None


def demo_catalog(runs):
    """The demo catalogue: six datasets, two facilities, one hidden from alice.

    ``runs`` maps run names to paths; entries whose run was not generated
    (a ``daas.demo_data`` plugin that is not installed) are left out.
    """
    entries = [
            {
                "pid": "xfel:p002120:r0029",
                "title": "Lysozyme SFX, AGIPD-1M, run 29",
                "facility": "EuXFEL", "instrument": "SPB/SFX", "proposal": "2120",
                "path": runs.get("agipd"), "access_groups": ["p2120"], "public": False,
                "techniques": ["serial crystallography"], "size_bytes": _size(runs.get("agipd")),
                "description": "Corrected AGIPD-1M frames with XGM pulse energies.",
            },
            {
                "pid": "xfel:p002121:r0012",
                "title": "Photosystem II, JUNGFRAU 4M, run 12",
                "facility": "EuXFEL", "instrument": "SPB/SFX", "proposal": "2121",
                "path": runs.get("jungfrau"), "access_groups": ["p2121"], "public": False,
                "techniques": ["serial crystallography"], "size_bytes": _size(runs.get("jungfrau")),
                "description": "JUNGFRAU 4M, 8 modules, memory cells.",
            },
            {
                "pid": "xfel:p700000:r0001",
                "title": "Spectra through a phase transition, run 1",
                "facility": "EuXFEL", "instrument": "FXE", "proposal": "700000",
                "path": runs.get("spectra"), "access_groups": [], "public": True,
                "techniques": ["x-ray emission spectroscopy"], "size_bytes": _size(runs.get("spectra")),
                "description": "Open data: spectra series whose peaks change at a phase transition.",
                "environment": "spectroscopy",  # the catalogue names the environment made for it
            },
            {
                "pid": "xfel:p900001:r0100",
                "title": "Commissioning run (restricted)",
                "facility": "EuXFEL", "instrument": "SPB/SFX", "proposal": "900001",
                "path": runs.get("agipd"), "access_groups": ["p900001"], "public": False,
                "techniques": ["commissioning"], "size_bytes": _size(runs.get("agipd")),
            },
            {
                "pid": "petra:p11:11012345",
                "title": "Thaumatin rotation series, P11",
                "facility": "PETRA III", "instrument": "P11", "proposal": "11012345",
                "path": runs.get("petra_mx"), "access_groups": ["petra-p11"], "public": False,
                "techniques": ["macromolecular crystallography"], "size_bytes": _size(runs.get("petra_mx")),
            },
            {
                "pid": "petra:p02.1:11054321",
                "title": "Powder diffraction of LaB6 standard, P02.1",
                "facility": "PETRA III", "instrument": "P02.1", "proposal": "11054321",
                "path": runs.get("petra_powder"), "access_groups": [], "public": True,
                "techniques": ["powder diffraction"], "size_bytes": _size(runs.get("petra_powder")),
            },
    ]
    return {"datasets": [e for e in entries if e["path"]]}


DEMO_ENVIRONMENTS = {
    "environments": [
        {
            "slug": "euxfel-mx",
            "display_name": "EuXFEL crystallography",
            "description": "extra-data, extra-geom, NXmx conversion, DIALS readers",
            "facilities": ["EuXFEL"],
            "image": "registry.example.org/daas/euxfel-mx:2026.11",
            "default_url": "/lab/tree/notebooks/nxmx_conversion.ipynb",
            "cpu_limit": 4, "mem_limit": "16G",
        },
        {
            "slug": "spectroscopy",
            "display_name": "Spectroscopy and machine learning",
            "description": "spectra classifier, TensorFlow/Keras, scikit-learn",
            "facilities": ["EuXFEL", "PETRA III"],
            "image": "registry.example.org/daas/spectroscopy:2026.11",
            "default_url": "/lab/tree/notebooks/spectra_classification.ipynb",
            "cpu_limit": 2, "mem_limit": "8G",
        },
        {
            "slug": "python-basic",
            "display_name": "Python (numpy, h5py, matplotlib)",
            "description": "a general-purpose environment for any facility",
            "facilities": [],
            "image": "registry.example.org/daas/python:2026.11",
            "default_url": "/lab/tree/notebooks/getting_started.ipynb",
        },
        {
            "slug": "desktop",
            "display_name": "Linux desktop (silx, terminal)",
            "description": "a remote desktop in the browser: the dataset, silx view, a terminal",
            "facilities": [],
            "image": "registry.example.org/daas/desktop:2026.11",
            "desktop": True,
        },
    ]
}


def _size(path):
    if not path:
        return None
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.stat(os.path.join(root, f)).st_blocks * 512 for f in files)
    return total


def ensure_demo_data(data_dir, log=print):
    """Generate the demo datasets under ``data_dir/datasets`` unless already there.

    Generation goes to a temporary folder renamed at the end, so an
    interrupted first run is simply redone.
    """
    from . import data as demo_data

    data_dir = Path(data_dir).resolve()
    datasets = data_dir / "datasets"
    info_file = datasets / "datasets.json"
    if info_file.exists():
        return json.loads(info_file.read_text())
    log(f"Generating demo datasets in {datasets} (first run only) ...")
    tmp = data_dir / ".datasets.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    runs = {
        "jungfrau": demo_data.write_jungfrau_run(tmp / "exfel/p002121/r0012")["path"],
        "petra_mx": demo_data.write_plain_dataset(tmp / "petra/p11/11012345", "Thaumatin", 11)["path"],
        "petra_powder": demo_data.write_plain_dataset(tmp / "petra/p02.1/11054321", "LaB6", 21)["path"],
    }
    # Plug-ins add the rest: "agipd" (lysozyme stills, server_ext.nxmx.demo) and
    # "spectra" (server_ext.spectra.synthetic).
    for name, ep in demo_data.plugin_writers().items():
        try:
            writer = ep.load()
        except ImportError as e:
            log(f"  skipping demo dataset {name!r}: {e}")
            continue
        runs[name] = writer(tmp / "plugins" / name)["path"]
    demo_data.make_read_only(tmp)
    runs = {k: str(datasets / Path(v).relative_to(tmp)) for k, v in runs.items()}
    (tmp / "datasets.json").write_text(json.dumps(runs, indent=2))
    os.replace(tmp, datasets)
    return runs


def write_hub_files(
    state_dir, catalog, environments, *, ip="127.0.0.1", port=8000, hub_port=8081,
    proxy_api_port=8001, api_port=8002, share_port=None, users=DEMO_USERS, allowed_data_roots=(), extra_config="",
    oidc_url=None, group_rules=None, catalog_class="yaml",
):
    """Write catalogue, environments and ``jupyterhub_config.py`` into ``state_dir``.

    Used by ``daas demo`` and by the integration tests, so the tests run the
    demo's own configuration. With ``oidc_url`` (an OpenID Connect provider's
    base URL) users log in there and their groups come from ``group_rules``;
    otherwise with the demo passwords and fixed groups. ``catalog`` may also be
    ``None`` when ``extra_config`` configures the catalogue itself.
    ``share_port`` (the sharing service's) defaults to a free port.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    catalog_path = state_dir / "catalog.yaml"
    if catalog is None:
        catalog_path = ""
    elif not isinstance(catalog, (str, Path)):
        write_atomic(catalog_path, yaml.safe_dump(catalog, sort_keys=False))
    else:
        catalog_path = Path(catalog)
    key_path = state_dir / "crypt_key"  # encrypts auth_state (access tokens); kept across restarts
    if not key_path.exists():
        write_atomic(key_path, secrets.token_hex(32))
        key_path.chmod(0o600)
    env_path = state_dir / "environments.yaml"
    write_atomic(env_path, yaml.safe_dump(environments, sort_keys=False))
    from .setup_tools import proxy_path

    chp = proxy_path() or shutil.which("configurable-http-proxy") or "configurable-http-proxy"
    groups = {}
    for name, (_, user_groups, _) in users.items():
        for g in user_groups:
            groups.setdefault(g, {"users": []})["users"].append(name)
    settings = {
        "ip": ip, "port": port, "hub_port": hub_port, "proxy_api_port": proxy_api_port, "api_port": api_port,
        "share_port": share_port or free_port(),
        "catalog_class": catalog_class, "oidc_url": oidc_url, "group_rules": group_rules or [],
        "state": str(state_dir), "chp": str(chp), "catalog": str(catalog_path),
        "environments": str(env_path), "roots": [str(r) for r in allowed_data_roots],
        "passwords": {n: u[0] for n, u in users.items()},
        "admins": sorted(n for n, u in users.items() if u[2]),
        "groups": groups,
    }
    settings_path = state_dir / "daas_settings.json"
    write_atomic(settings_path, json.dumps(settings, indent=2))
    config_path = state_dir / "jupyterhub_config.py"
    write_atomic(config_path, CONFIG_TEMPLATE + extra_config)
    return config_path


CONFIG_TEMPLATE = '''\
# Generated by panosc-daas (hub_ext/demo/command.py), with daas_settings.json beside it.
import json
import os

from hub_ext.api import configure as configure_dataset_api
from hub_ext.sharing import TEMPLATES as daas_templates
from hub_ext.sharing import configure as configure_sharing

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "daas_settings.json")) as f:
    s = json.load(f)
c = get_config()  # noqa: F821
c.JupyterHub.ip = s["ip"]
c.JupyterHub.port = s["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s["hub_port"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % s["proxy_api_port"]
c.ConfigurableHTTPProxy.command = [s["chp"]]
c.JupyterHub.db_url = "sqlite:///" + s["state"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = s["state"] + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = s["state"] + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.template_paths = [str(daas_templates)]  # the home page links to the Share page
with open(s["state"] + "/crypt_key") as f:
    c.CryptKeeper.keys = [f.read().strip()]
configure_dataset_api(c, config_file=__file__, port=s["api_port"])
configure_sharing(c, config_file=__file__, port=s["share_port"])  # proposal sharing: API and page
c.Authenticator.admin_users = set(s["admins"])
if s["oidc_url"]:
    # Log in at the OpenID Connect provider; groups from its claims, re-synced at each login.
    c.JupyterHub.authenticator_class = "facility-oidc"
    c.FacilityOIDCAuthenticator.authorize_url = s["oidc_url"] + "/oauth2/authorize"
    c.FacilityOIDCAuthenticator.token_url = s["oidc_url"] + "/oauth2/token"
    c.FacilityOIDCAuthenticator.userdata_url = s["oidc_url"] + "/userinfo"
    c.FacilityOIDCAuthenticator.client_id = "panosc-daas-demo"
    c.FacilityOIDCAuthenticator.client_secret = "demo-secret"
    c.FacilityOIDCAuthenticator.oauth_callback_url = "http://%s:%d/hub/oauth_callback" % (s["ip"], s["port"])
    c.FacilityOIDCAuthenticator.group_rules = s["group_rules"]
else:
    c.JupyterHub.authenticator_class = "hub_ext.demo.command.DemoAuthenticator"
    c.DemoAuthenticator.passwords = s["passwords"]
    c.Authenticator.allow_all = True
    c.JupyterHub.load_groups = s["groups"]
c.JupyterHub.spawner_class = "facility-local"
c.FacilitySpawner.catalog_class = s["catalog_class"]
if s["catalog"]:
    c.YamlCatalog.path = s["catalog"]
c.FacilitySpawner.environments_file = s["environments"]
c.FacilitySpawner.allowed_data_roots = s["roots"]
c.FacilityLocalSpawner.users_root = s["state"] + "/users"
c.FacilityLocalSpawner.allow_root = True  # a demo on a machine of its own (CI runs as root)
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
'''


def run_demo(args):
    from .setup_tools import ensure_debian_packages, ensure_proxy, ensure_jupyter_config

    ensure_proxy()
    ensure_jupyter_config()
    missing = ensure_debian_packages(("runtime",))
    if missing:
        print(f"Not installed (the features that need them say so): {' '.join(missing)}; "
              f"to add them: sudo apt-get install {' '.join(missing)}", flush=True)
    ports = {"port": args.port, "hub-port": args.hub_port, "proxy-api-port": args.proxy_api_port,
             "api-port": args.api_port, "share-port": args.share_port}
    if args.oidc:
        ports["oidc-port"] = args.oidc_port
    check_ports_free(args.ip, ports)
    data_dir = Path(args.data_dir).resolve()
    runs = ensure_demo_data(data_dir)
    provider = contextlib.nullcontext()
    oidc_url = None
    if args.oidc:
        from .oidc import DEMO_GROUP_RULES, DEMO_IDENTITIES, start_provider

        provider = start_provider(args.oidc_port)
        oidc_url = f"http://127.0.0.1:{args.oidc_port}"
    config = write_hub_files(
        data_dir / "hub", demo_catalog(runs), DEMO_ENVIRONMENTS,
        ip=args.ip, port=args.port, hub_port=args.hub_port, proxy_api_port=args.proxy_api_port,
        api_port=args.api_port, share_port=args.share_port, allowed_data_roots=[data_dir / "datasets"],
        oidc_url=oidc_url, group_rules=DEMO_GROUP_RULES if args.oidc else None,
    )
    print(f"\npanosc-daas demo: http://{args.ip}:{args.port}\n")
    if args.oidc:
        print(f"Log in through the local OpenID Connect provider ({oidc_url}); type one of these names there:")
        for name, claims in DEMO_IDENTITIES.items():
            shown = {k: v for k, v in claims.items() if k != "name"}
            print(f"  {name:6} {json.dumps(shown) if shown else '(no claims: admin_users)'}")
        print("\nGroups come from the claims (entitlements with role member/owner, accessGroups,")
        print("petra-* groups); carol holds none and is refused. Edit a user's claims while the demo runs:")
        print(f"  curl -X PUT -H 'Content-Type: application/json' -d '{{\"entitlements\": []}}' {oidc_url}/users/alice")
        print("and log in again: the groups (and a running server's dataset) follow.")
    else:
        print("Log in as (password, groups):")
        for name, (password, groups, admin) in DEMO_USERS.items():
            extra = " (hub admin, no data access)" if admin else ""
            print(f"  {name:6} {password:12} {', '.join(groups) or '-'}{extra}")
        print("\nalice sees the p2120/p2121 runs and the public datasets, not the restricted")
        print("commissioning run.")
    print("Ctrl-C stops the hub, the proxy and all servers.\n", flush=True)
    hub = HubProcess(config, f"http://{args.ip}:{args.port}")

    def terminate(signum, frame):  # `kill`, a closed terminal: stop cleanly, as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    with provider:
        try:
            hub.start(timeout=120)
            print(f"Ready: http://{args.ip}:{args.port}", flush=True)
            return hub.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            hub.stop()


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="start the demo hub at http://127.0.0.1:8000",
        description="Set up (as `daas setup`), write demo datasets on the first run, and start a "
        "JupyterHub with the facility spawner on local processes, its proxy and services; Ctrl-C "
        "stops them all. The log-ins are printed.")
    p.add_argument("--data-dir", default="demo-data", help="where demo data and hub state live (default: ./demo-data)")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address of the public port (default 127.0.0.1: this machine only; the hub's "
                        "API and the services stay on 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="public port (default 8000)")
    p.add_argument("--hub-port", type=int, default=8081, help="internal hub API port (default 8081)")
    p.add_argument("--proxy-api-port", type=int, default=8001, help="proxy REST API port (default 8001)")
    p.add_argument("--api-port", type=int, default=8002, help="dataset search service port (default 8002)")
    p.add_argument("--share-port", type=int, default=8003, help="sharing service port (default 8003)")
    p.add_argument("--oidc", action="store_true",
                   help="log in through a local OpenID Connect provider (groups from token claims) instead of passwords")
    p.add_argument("--oidc-port", type=int, default=8004, help="port of the local OpenID Connect provider (default 8004)")
    p.set_defaults(func=run_demo)
