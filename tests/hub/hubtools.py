"""Start a real JupyterHub (demo configuration) and talk to it like a browser or an API client."""

import re
import time
from pathlib import Path

import requests
import yaml

from hub_ext.demo.command import DEMO_ENVIRONMENTS, DEMO_USERS, write_hub_files
from hub_ext.demo.hubprocess import HubProcess

from hub_ext.demo.hubprocess import free_port

API_TOKEN = "daas-test-token-0123456789abcdef"
READER_TOKEN = "daas-reader-token-0123456789abcdef"  # a service granted custom:daas:datasets

TEST_CONFIG = f'''
c.YamlCatalog.check_interval = 0
c.JupyterHub.services.append({{"name": "tester", "api_token": "{API_TOKEN}"}})
c.JupyterHub.load_roles.append({{
    "name": "tester",
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users", "admin:groups", "tokens",
               "admin:auth_state", "read:shares"],
    "services": ["tester"],
}})
c.JupyterHub.services.append({{"name": "catalogue-reader", "api_token": "{READER_TOKEN}"}})
c.JupyterHub.load_roles.append({{
    "name": "catalogue-reader", "scopes": ["custom:daas:datasets"], "services": ["catalogue-reader"],
}})
'''


class Hub:
    """A running hub plus helpers; ``catalog_path`` may be rewritten by tests."""

    def __init__(self, state_dir, catalog, environments=DEMO_ENVIRONMENTS, extra_config="", allowed_data_roots=(),
                 **hub_files):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = Path(state_dir)
        self.config = write_hub_files(
            state_dir, catalog, environments, port=self.port, hub_port=free_port(),
            proxy_api_port=free_port(), api_port=free_port(), allowed_data_roots=allowed_data_roots,
            extra_config=TEST_CONFIG + extra_config, **hub_files,
        )
        self.search_url = f"{self.url}/services/daas-datasets/datasets"
        self.share_url = f"{self.url}/services/daas-share"
        self.catalog_path = self.state_dir / "catalog.yaml"
        self.log_path = self.state_dir / "jupyterhub.log"
        self.process = HubProcess(self.config, self.url, log_path=self.log_path)

    def start(self):
        self.process.start(timeout=120)
        return self

    def stop(self):
        self.process.stop()

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    # -- API -----------------------------------------------------------------
    def api(self, method, path, **kw):
        headers = kw.pop("headers", {})
        headers.setdefault("Authorization", f"token {API_TOKEN}")
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kw)

    def server_state(self, user):
        model = self.api("GET", f"/users/{user}").json()
        return model.get("servers", {}).get("")

    def wait_ready(self, user, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.server_state(user)
            if s and s.get("ready"):
                return s
            if s is None or not s.get("pending") and not s.get("ready"):
                time.sleep(0.5)
                s = self.server_state(user)
                if s is None:
                    raise AssertionError(f"server of {user} stopped while starting:\n{self.log_text()[-3000:]}")
            time.sleep(0.5)
        raise AssertionError(f"server of {user} not ready after {timeout} s:\n{self.log_text()[-3000:]}")

    def stop_server(self, user, timeout=60):
        r = self.api("DELETE", f"/users/{user}/server")
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while self.server_state(user) is not None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert self.server_state(user) is None, \
            f"server of {user} not stopped after {timeout} s:\n{self.log_text()[-3000:]}"

    def set_catalog(self, catalog):
        tmp = self.catalog_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(catalog, sort_keys=False))
        tmp.replace(self.catalog_path)

    def login(self, user):
        return Browser(self, user)


class Browser:
    """A requests session logged in through the hub's login form, like a person."""

    def __init__(self, hub, user):
        self.hub = hub
        self.user = user
        self.s = requests.Session()
        r = self.s.get(f"{hub.url}/hub/login", timeout=30)
        r = self.s.post(
            f"{hub.url}/hub/login",
            data={"username": user, "password": DEMO_USERS[user][0], "_xsrf": self.xsrf(r.text)},
            allow_redirects=False, timeout=30,
        )
        assert r.status_code == 302, f"login of {user} failed: {r.status_code}"

    @staticmethod
    def xsrf(html):
        m = re.search(r'name="_xsrf" value="([^"]+)"', html) or re.search(r'xsrf_token: "([^"]+)"', html)
        assert m, "no _xsrf field in the page"
        return m.group(1)

    def get(self, path, **kw):
        return self.s.get(f"{self.hub.url}{path}", timeout=30, **kw)

    def spawn_form(self):
        r = self.get("/hub/spawn")
        assert r.status_code == 200, r.status_code
        return r.text

    def post_form(self, fields):
        """Submit the spawn form with ``fields`` (a dict of str or list values)."""
        page = self.get("/hub/spawn").text
        data = [("_xsrf", self.xsrf(page))]
        for k, v in fields.items():
            for item in v if isinstance(v, list) else [v]:
                data.append((k, item))
        return self.s.post(f"{self.hub.url}/hub/spawn", data=data, allow_redirects=False, timeout=60)

    def token(self, note="test"):
        """An API token this user makes for herself: it carries her permissions (sharing her sessions included)."""
        r = self.s.post(f"{self.hub.url}/hub/api/users/{self.user}/tokens", json={"note": note}, timeout=30,
                        headers={"X-XSRFToken": self.s.cookies.get("_xsrf", path="/hub/") or ""})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def share(self, method, owner, server="", **kw):
        """A call of the sharing service's API (``daas-share``) with this user's own token."""
        if not hasattr(self, "_own_token"):
            self._own_token = self.token("sharing")
        return requests.request(method, f"{self.hub.share_url}/api/shares/{owner}/{server}", timeout=30,
                                headers={"Authorization": f"token {self._own_token}"}, **kw)

    def picker_token(self):
        """The search token the spawn form hands its picker (as the browser's script reads it)."""
        m = re.search(r'data-token="([^"]*)"', self.spawn_form())
        assert m and m.group(1), "the spawn form carries no search token"
        return m.group(1)

    def search(self, **params):
        """The picker's search request: the service, with the form's token."""
        if not hasattr(self, "_token"):
            self._token = self.picker_token()
        return requests.get(self.hub.search_url, params=params, timeout=30,
                            headers={"Authorization": f"token {self._token}"})
