"""Federated login and catalogues in a real hub: OpenID Connect provider on loopback, real proxy.

One hub for the module (hubs are slow to start on two cores): it logs users
in at ``oidc-provider-mock`` (authorization code flow over real sockets) with
the demo's claim -> group rules, and serves a federated catalogue of two
facilities: the demo YAML catalogue (``xfel:``) and a SciCat that is down
(``dead:``). Scenarios: the full redirect flow, groups from each claim kind,
refused logins (no group, tampered state or code), access token refresh,
the picker naming the unavailable facility, and an entitlement removed at the
provider taking away both the dataset and the server running on it.
"""

import copy
import re
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
import yaml

from hub_ext.demo.command import demo_catalog
from hub_ext.demo.hubprocess import free_port
from hub_ext.demo.oidc import DEMO_GROUP_RULES, DEMO_IDENTITIES, entitlement, start_provider

from .hubtools import Hub

TOKEN_LIFETIME_S = 4  # short, so the refresh is exercised
POLL_S = 2  # how often the hub re-checks a running server's access


@pytest.fixture(scope="module")
def provider():
    with start_provider(0, identities=copy.deepcopy(DEMO_IDENTITIES), token_lifetime_s=TOKEN_LIFETIME_S) as server:
        url = f"http://127.0.0.1:{server.server_port}"
        yield url
        for name, claims in DEMO_IDENTITIES.items():  # the provider's users live in its module
            requests.put(f"{url}/users/{name}", json=claims, timeout=10)


@pytest.fixture(scope="module")
def oidc_hub(tmp_path_factory, demo_runs, provider):
    state = tmp_path_factory.mktemp("oidc-hub")
    (state / "xfel.yaml").write_text(yaml.safe_dump(demo_catalog(demo_runs), sort_keys=False))
    dead = f"http://127.0.0.1:{free_port()}/api/v3"  # nothing listens there
    backends = [
        {"name": "xfel", "facility": "EuXFEL", "class": "yaml", "config": {"path": str(state / "xfel.yaml")}},
        {"name": "dead", "facility": "Dead Facility", "class": "scicat", "timeout": 1,
         "config": {"url": dead, "token": "t", "timeout": 1}},
    ]
    extra = f"""
c.FederatedCatalog.backends = {backends!r}
c.FederatedCatalog.cache_ttl = 0
c.Spawner.poll_interval = {POLL_S}
c.Authenticator.auth_refresh_age = 1
"""
    roots = [str(state), str(next(iter(demo_runs.values()))).rsplit("/datasets/", 1)[0] + "/datasets"]
    hub = Hub(state, None, allowed_data_roots=roots, oidc_url=provider, group_rules=DEMO_GROUP_RULES,
              catalog_class="federated", extra_config=extra)
    hub.start()
    yield hub
    hub.stop()


class OidcSession:
    """A browser-like session that logs in through the provider's pages."""

    def __init__(self, hub):
        self.hub = hub
        self.s = requests.Session()

    def start_login(self):
        """Follow the hub to the provider; return the provider's authorization URL."""
        r = self.s.get(f"{self.hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
        assert r.status_code == 302, r.status_code
        return r.headers["Location"]

    def authorize(self, authorize_url, sub):
        """Sign in at the provider as ``sub``; return the hub's callback URL (code + state)."""
        page = self.s.get(authorize_url, timeout=30)
        assert page.status_code == 200 and 'name="sub"' in page.text
        r = self.s.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=30)
        assert r.status_code == 302, r.text[:500]
        return r.headers["Location"]

    def callback(self, url):
        return self.s.get(url, allow_redirects=False, timeout=60)

    def login(self, sub):
        r = self.callback(self.authorize(self.start_login(), sub))
        return r

    def logged_in_as(self):
        r = self.s.get(f"{self.hub.url}/hub/api/user", timeout=30,
                       headers={"Referer": f"{self.hub.url}/hub/home"})
        return r.json().get("name") if r.status_code == 200 else None

    def get(self, path, **kw):
        return self.s.get(f"{self.hub.url}{path}", timeout=60, **kw)


def login(hub, sub):
    session = OidcSession(hub)
    r = session.login(sub)
    assert r.status_code == 302 and "login" not in r.headers["Location"], (r.status_code, r.text[:500])
    assert session.logged_in_as() == sub
    return session


def groups_of(hub, user):
    return sorted(hub.api("GET", f"/users/{user}").json()["groups"])


def pids_in(html):
    return set(re.findall(r'data-pid="([^"]+)"', html))


def set_claims(provider, user, claims):
    r = requests.put(f"{provider}/users/{user}", json=claims, timeout=10)
    assert r.status_code == 204


def with_query(url, **changes):
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- login ---------------------------------------------------------------------------------


def test_login_flow_and_groups_from_each_claim_kind(oidc_hub):
    alice = login(oidc_hub, "alice")
    assert alice.logged_in_as() == "alice"
    assert groups_of(oidc_hub, "alice") == ["p2120", "p2121"]  # entitlements; the applicant role dropped
    login(oidc_hub, "bob")
    assert groups_of(oidc_hub, "bob") == ["p900001", "petra-p11"]  # accessGroups + plain groups
    # the access token is kept, encrypted, in auth_state
    state = oidc_hub.api("GET", "/users/alice").json()["auth_state"]
    assert state["access_token"] and state["refresh_token"] and state["expires_at"] > 0
    db = (oidc_hub.state_dir / "jupyterhub.sqlite").read_bytes()
    assert state["access_token"].encode() not in db


def test_user_without_an_allowed_group_is_refused(oidc_hub):
    carol = OidcSession(oidc_hub)
    r = carol.login("carol")
    assert r.status_code == 403
    assert carol.logged_in_as() is None


def test_tampered_state_or_code_is_refused(oidc_hub):
    mallory = OidcSession(oidc_hub)
    callback = mallory.authorize(mallory.start_login(), "alice")
    assert mallory.callback(with_query(callback, state="forged-state")).status_code >= 400
    assert mallory.logged_in_as() is None
    # a state from an earlier, abandoned login is stale once a new one began
    old = mallory.authorize(mallory.start_login(), "alice")
    fresh = mallory.authorize(mallory.start_login(), "alice")
    assert mallory.callback(old).status_code >= 400
    assert mallory.logged_in_as() is None
    assert mallory.callback(with_query(fresh, code="forged-code")).status_code >= 400
    assert mallory.logged_in_as() is None
    # the genuine code still works once, and is not accepted a second time
    eve = OidcSession(oidc_hub)
    genuine = eve.authorize(eve.start_login(), "alice")
    assert eve.callback(genuine).status_code == 302 and eve.logged_in_as() == "alice"
    replay = OidcSession(oidc_hub)
    replay.s.cookies.update({k: v for k, v in eve.s.cookies.items() if "oauth-state" in k or "oauthenticator" in k})
    assert replay.callback(genuine).status_code >= 400 and replay.logged_in_as() is None


def test_expired_access_token_is_refreshed(oidc_hub):
    alice = login(oidc_hub, "alice")
    before = oidc_hub.api("GET", "/users/alice").json()["auth_state"]
    time.sleep(TOKEN_LIFETIME_S + 1)
    assert alice.get("/hub/spawn").status_code == 200  # the hub refreshes auth on requests
    after = oidc_hub.api("GET", "/users/alice").json()["auth_state"]
    assert after["access_token"] != before["access_token"] and after["expires_at"] > before["expires_at"]
    assert "Access token of alice expired: refreshing" in oidc_hub.log_text()


# -- the federated picker ---------------------------------------------------------------------


def test_picker_names_the_unavailable_facility_and_refuses_its_datasets(oidc_hub):
    alice = login(oidc_hub, "alice")
    html = alice.get("/hub/spawn").text
    assert pids_in(html) >= {"xfel:xfel:p002120:r0029", "xfel:xfel:p002121:r0012"}
    assert "xfel:xfel:p900001:r0100" not in pids_in(html)
    assert re.search(r'id="daas-unavailable"[^>]*>\s*Not shown: the catalogue of Dead Facility', html)
    assert '<option value="Dead Facility">' in html and '<option value="EuXFEL">' in html
    assert "/data" not in re.search(r'id="daas-first-page">(.*?)</script>', html, re.S).group(1)
    r = oidc_hub.api("POST", "/users/alice/server", json={"dataset": "dead:anything", "environment": "python-basic"})
    assert r.status_code == 503 and "Dead Facility catalogue is unavailable" in r.json()["message"]
    assert oidc_hub.server_state("alice") is None


# -- revocation -------------------------------------------------------------------------------


def test_removed_entitlement_takes_the_dataset_and_the_running_server(oidc_hub, provider):
    pid = "xfel:xfel:p002120:r0029"
    alice = login(oidc_hub, "alice")
    assert pid in pids_in(alice.get("/hub/spawn").text)
    r = oidc_hub.api("POST", "/users/alice/server", json={"dataset": pid, "environment": "euxfel-mx"})
    assert r.status_code in (201, 202), r.text
    oidc_hub.wait_ready("alice")
    try:
        claims = copy.deepcopy(DEMO_IDENTITIES["alice"])
        claims["entitlements"] = [entitlement("2121")]  # the PI removed alice from proposal 2120
        set_claims(provider, "alice", claims)
        alice = login(oidc_hub, "alice")
        assert groups_of(oidc_hub, "alice") == ["p2121"]
        deadline = time.monotonic() + 60
        while oidc_hub.server_state("alice") is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert oidc_hub.server_state("alice") is None, "the server kept running without access"
        assert "access to its dataset was withdrawn" in oidc_hub.log_text()
        html = alice.get("/hub/spawn").text
        assert "you no longer have access to dataset" in html  # said once, on the next form
        assert pid not in pids_in(html)
        r = oidc_hub.api("POST", "/users/alice/server", json={"dataset": pid, "environment": "euxfel-mx"})
        assert r.status_code == 403
    finally:
        set_claims(provider, "alice", DEMO_IDENTITIES["alice"])
        if oidc_hub.server_state("alice") is not None:
            oidc_hub.stop_server("alice")
