"""Authentication, authorization, XSRF, WebSocket origin, path confinement and body checks."""

import os

import pytest
import requests

from server_ext.extension.schema import openapi

from .conftest import TOKEN, Api
from .openapi_check import check_response

SAMPLE_ID = "0123456789abcdef"


def documented_operations():
    for template, item in openapi()["paths"].items():
        for method in ("get", "post", "delete"):
            if method in item:
                yield method.upper(), template.strip("/").replace("{job_id}", SAMPLE_ID) \
                    .replace("{model_id}", SAMPLE_ID).replace("{stream_id}", SAMPLE_ID)


@pytest.mark.parametrize("method,path", list(documented_operations()))
def test_no_token_is_403(server, method, path):
    r = Api(server, token=None)(method, path, json={})
    assert r.status_code == 403, (method, path, r.status_code)


def test_wrong_token_is_403(server):
    assert Api(server, token="not-the-token").get("session").status_code == 403


@pytest.fixture(scope="module")
def browser(server):
    """A session logged in as a browser is: the login cookie, no token."""
    s = requests.Session()
    s.get(f"{server.url}login?next=/", timeout=30)
    r = s.post(f"{server.url}login", data={"password": TOKEN, "_xsrf": s.cookies.get("_xsrf")}, timeout=30,
               allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    assert s.get(server.api_url + "session", timeout=30).status_code == 200  # the cookie works
    return s


def test_browser_post_needs_xsrf(server, browser):
    """A cookie-authenticated POST without the _xsrf token is refused (and with it, accepted)."""
    body = {"path": "processed/none.nxs"}
    r = browser.post(server.api_url + "nxmx/validate", json=body, timeout=30)
    assert r.status_code == 403
    assert "XSRF" in r.text or "xsrf" in r.text
    r = browser.post(server.api_url + "nxmx/validate", json=body,
                     headers={"X-XSRFToken": browser.cookies.get("_xsrf")}, timeout=30)
    assert r.status_code == 404  # past the XSRF check: the file does not exist


def test_websocket_from_a_foreign_origin_is_refused(server, browser):
    import asyncio

    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)

    async def connect(origin):
        url = server.api_url.replace("http://", "ws://") + f"spectra/streams/{SAMPLE_ID}/ws"
        try:
            await asyncio.wait_for(websocket_connect(HTTPRequest(url, headers={"Cookie": cookie, "Origin": origin})),
                                   30)
        except HTTPClientError as e:
            return e.code
        return 101

    assert asyncio.run(connect("http://evil.example.org")) == 403
    assert asyncio.run(connect(server.url.rstrip("/"))) == 404  # same origin: past the check, no such stream


@pytest.fixture(scope="module")
def escape_link(server_root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.h5").write_bytes(b"x")
    link = server_root["root"] / "escape"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    return outside


ESCAPES = ["../outside.nxs", "/etc/passwd", "escape/secret.h5", "processed/../../x.nxs"]


@pytest.mark.parametrize("run", ESCAPES)
def test_conversion_input_outside_the_allowed_roots(api, escape_link, nothing_written, run):
    r = check_response(api.post("nxmx/jobs", json={"run": run, "output": "processed/x.nxs"}), "nxmx/jobs")
    assert r.status_code == 403, r.text
    assert "outside" in r.json()["message"]


@pytest.mark.parametrize("output", ["../x.nxs", "/tmp/x.nxs", "escape/x.nxs", "data/p002120/x.nxs",
                                    "data/x.nxs", "processed/../../x.nxs"])
def test_conversion_output_outside_the_root_or_in_the_dataset(api, escape_link, nothing_written, output,
                                                              agipd_run_rel):
    r = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": output})
    check_response(r, "nxmx/jobs")
    assert r.status_code == 403, r.text
    assert not os.listdir(escape_link) == ["x.nxs"]


@pytest.mark.parametrize("path", ESCAPES)
def test_other_inputs_are_confined_too(api, escape_link, nothing_written, path):
    assert api.get("runs", params={"path": path}).status_code == 403
    assert api.post("nxmx/validate", json={"path": path}).status_code == 403
    assert api.post("spectra/models", json={"data": path, "labels": ["a=0:1", "b=1:2"]}).status_code == 403


@pytest.mark.parametrize("body,field", [
    (b"{not json", "JSON"),
    ({"run": "x", "output": "processed/x.nxs", "colour": "red"}, "colour"),
    ({"run": "x", "output": "processed/x.nxs", "distance": "far"}, "distance"),
    ({"run": "x", "output": "processed/x.nxs", "trains": {"start": -1}}, "trains.start"),
    ({"run": "x", "output": "processed/x.nxs", "mode": "zip"}, "mode"),
    ({"run": 3, "output": "processed/x.nxs"}, "run"),
    ({"output": "processed/x.nxs"}, "run"),
    ([1, 2], "body"),
])
def test_bad_bodies_are_400_naming_the_field(api, nothing_written, body, field):
    kw = {"data": body} if isinstance(body, bytes) else {"json": body}
    r = check_response(api.post("nxmx/jobs", **kw), "nxmx/jobs")
    assert r.status_code == 400, r.text
    assert field in r.json()["message"]


def test_bad_training_and_stream_bodies(api, nothing_written):
    r = api.post("spectra/models", json={"data": "x", "labels": ["a=0:1", "b=1:2"], "params": {"n_bins": "many"}})
    assert r.status_code == 400 and "params.n_bins" in r.json()["message"]
    r = api.post("spectra/models", json={"data": "x", "labels": ["a=0:1", "b=1:2"], "params": {"pickle": 1}})
    assert r.status_code == 400 and "pickle" in r.json()["message"]
    r = api.post("spectra/models", json={"data": "x", "labels": ["a=0:1", "b=1:2"],
                                         "params": {"fixed_ranges": [[1, 2, 3]]}})
    assert r.status_code == 400 and "params.fixed_ranges" in r.json()["message"]
    r = api.post("spectra/streams", json={"model": SAMPLE_ID, "source": {"endpoint": "http://x"}})
    assert r.status_code == 400 and "source.endpoint" in r.json()["message"]
