"""Rendering the chart with real Helm (the helm-python-sdk library) for the chart tests."""

import base64
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "panosc-daas"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "daas"
NAMESPACE = "facility"


class Rendered:
    """The objects of one render, with lookups by kind and name."""

    def __init__(self, manifests: dict[str, str], values: dict):
        self.manifests = manifests
        self.values = values
        self.notes = next((v for k, v in manifests.items() if k.endswith("NOTES.txt")), "")
        self.objects = [
            doc
            for name, text in sorted(manifests.items())
            if name.endswith(".yaml")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    def of_kind(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind, name):
        (found,) = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found

    def one(self, kind, component):
        (found,) = [
            o for o in self.of_kind(kind)
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        return found

    def pod_specs(self):
        """(owner, pod spec, pod labels) of every workload."""
        return [
            (o["metadata"]["name"], o["spec"]["template"]["spec"], o["spec"]["template"]["metadata"]["labels"])
            for o in self.of_kind("Deployment")
        ]

    def secret_data(self, name) -> dict[str, str]:
        secret = self.get("Secret", name)
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        return data


def load_values(name: str | None) -> dict:
    return yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text()) if name else {}


def render(chart, values: dict, config=None, **options) -> Rendered:
    """Render offline (``lookup`` finds nothing) or against ``config``'s API server."""
    options = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True, **options}
    if config is None:
        manifests = chart.render(values=values, **options)
    else:
        manifests = config.render(chart, values, **options)
    return Rendered(manifests, values)


class _KubeApiHandler(BaseHTTPRequestHandler):
    """Answers the two requests Helm's ``lookup`` of a Secret makes, like a kube-apiserver."""

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        secrets = self.server.secrets
        prefix = f"/api/v1/namespaces/{NAMESPACE}/secrets/"
        if path == "/api/v1":
            self._send(200, {
                "kind": "APIResourceList", "groupVersion": "v1",
                "resources": [{"name": "secrets", "singularName": "secret", "namespaced": True,
                               "kind": "Secret", "verbs": ["get", "list"]}],
            })
        elif path.startswith(prefix) and path[len(prefix):] in secrets:
            self._send(200, secrets[path[len(prefix):]])
        else:
            name = path.rsplit("/", 1)[-1]
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "NotFound", "code": 404, "message": f'secrets "{name}" not found'})

    def log_message(self, *args):
        pass


@contextmanager
def fake_kube_api(secrets: dict[str, dict]):
    """A loopback API server holding ``secrets`` (name -> Secret object); yields a helm Config.

    No kube-apiserver can run on the test machines; this speaks the part of its
    REST protocol that ``lookup`` uses (discovery of v1, GET of a Secret).
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KubeApiHandler)
    server.secrets = secrets
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = helm.Config(kube_apiserver=f"http://127.0.0.1:{server.server_port}", kube_token="unused",
                         namespace=NAMESPACE, qps=100, burst_limit=100)
    try:
        yield config
    finally:
        config.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
