"""The chart renders with real Helm, lints clean and every object is valid Kubernetes."""

import re
from importlib.metadata import version

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from .charttools import CHART_DIR, NAMESPACE, RELEASE, VALUES_DIR, load_values, render
from .conftest import VALUES_FILES

#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest known.
K8S_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]


def test_chart_metadata(chart):
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == version("panosc-daas")
    assert meta["kubeVersion"].startswith(">=1.28")
    assert chart.schema is not None


def test_every_values_file_is_rendered():
    assert sorted(p.stem for p in VALUES_DIR.glob("*.yaml")) == sorted(n for n in VALUES_FILES if n)


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda n: n or "defaults")
@pytest.mark.parametrize("kube_version", ["v1.28.0", "v1.37.0"])
def test_lint_strict(values, kube_version):
    report = helm.lint(CHART_DIR, load_values(values), strict=True, namespace=NAMESPACE, kube_version=kube_version)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("kube_version", K8S_VERSIONS)
def test_every_object_validates_strictly(rendered, kube_version):
    assert len(rendered.objects) >= 12
    for obj in rendered.objects:
        # Raises on any unknown field or wrong type (strict), naming the object.
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_strict_validation_catches_a_misspelt_field(renders):
    # Guards the check above: a real API server would silently drop this field.
    hub = yaml.safe_load(yaml.safe_dump(renders(None).one("Deployment", "hub")))
    container = hub["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = container["securityContext"].pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(hub, K8S_VERSIONS[-1], strict=True)


def test_objects_are_named_for_the_release(rendered):
    names = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert len(names) == len(set(names))
    for kind, name in names:
        assert name.startswith(RELEASE) and len(name) <= 63 and re.fullmatch(r"[a-z0-9-]+", name), (kind, name)


def test_default_values_are_a_trial_install(renders):
    r = renders(None)
    public = r.get("Service", f"{RELEASE}-panosc-daas-proxy-public")
    assert public["spec"]["type"] == "LoadBalancer"
    assert r.of_kind("Ingress") == []
    assert "shared-password" in r.secret_data(f"{RELEASE}-panosc-daas-hub-secret")
    assert "shared password" in r.notes and "get service" in r.notes
    assert "datasets.volume is not set" in r.notes


def test_ingress_with_tls(renders):
    r = renders("ingress-tls")
    (ingress,) = r.of_kind("Ingress")
    assert ingress["spec"]["tls"] == [{"secretName": "daas-tls", "hosts": ["daas.example.org"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "daas.example.org"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/daas/"
    assert path["backend"]["service"]["name"] == f"{RELEASE}-panosc-daas-proxy-public"
    assert "https://daas.example.org/daas/" in r.notes
    hub = r.one("Deployment", "hub")["spec"]["template"]["spec"]["containers"][0]
    assert hub["readinessProbe"]["httpGet"]["path"] == "/daas/hub/health"


def test_hub_deployment_shape(rendered):
    hub = rendered.one("Deployment", "hub")
    assert hub["spec"]["replicas"] == 1
    assert hub["spec"]["strategy"] == {"type": "Recreate"}
    annotations = hub["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config-map", "checksum/config-values"} <= set(annotations)
    (container,) = hub["spec"]["template"]["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "hub"
    assert container["image"].endswith(":" + version("panosc-daas"))


def test_config_change_rolls_the_hub(chart, renders):
    before = renders(None).one("Deployment", "hub")["spec"]["template"]["metadata"]["annotations"]
    after = render(chart, {"cull": {"timeout": 7200}}).one("Deployment", "hub")["spec"]["template"]["metadata"]["annotations"]
    assert after["checksum/config-values"] != before["checksum/config-values"]
    assert after["checksum/config-map"] == before["checksum/config-map"]


def test_database_choice(renders):
    default = renders(None)
    (pvc,) = default.of_kind("PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    external = renders("external-db")
    assert external.of_kind("PersistentVolumeClaim") == []
    env = {e["name"]: e for e in external.one("Deployment", "hub")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DAAS_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hub-db", "key": "url"}


def test_pod_disruption_budgets(renders):
    assert renders(None).of_kind("PodDisruptionBudget") == []
    r = renders("existing-secret")
    budgets = r.of_kind("PodDisruptionBudget")
    assert len(budgets) == 2
    selected = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for b in budgets}
    assert selected == {"hub", "proxy"}
    for budget in budgets:
        deployment = r.one("Deployment", budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"])
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_packaged_chart_renders_the_same(chart, renders, tmp_path):
    """What `helm package` ships (.helmignore applied) carries every template and file."""
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with helm.Chart.load(archive) as packaged:
        assert packaged.version == chart.version
        assert "files/jupyterhub_config.py" in {f["name"] for f in packaged.files}
        assert packaged.schema == chart.schema
        config_map = render(packaged, {}).one("ConfigMap", "hub")
    assert config_map["data"]["jupyterhub_config.py"] == (CHART_DIR / "files" / "jupyterhub_config.py").read_text()
    assert config_map == renders(None).one("ConfigMap", "hub")
