"""Security properties of the rendered objects: RBAC, containers, secrets, network policies."""

import base64
import ipaddress

import helm_python as helm
import pytest

from .charttools import NAMESPACE, RELEASE, fake_kube_api, render

FULLNAME = f"{RELEASE}-panosc-daas"
GENERATED_SECRET = f"{FULLNAME}-hub-secret"
METADATA_ADDRESS = "169.254.169.254"
GENERATED_KEYS = {"proxy-token", "cookie-secret", "crypt-key", "shared-password"}


def test_rbac_is_namespaced_and_minimal(rendered):
    kinds = {o["kind"] for o in rendered.objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    role = rendered.one("Role", "hub")
    granted = {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    assert {r for r, _ in granted} == {"pods", "persistentvolumeclaims", "events"}
    assert ("events", "create") not in granted and ("pods", "update") not in granted
    assert not any(v in ("*", "escalate", "bind", "impersonate") for _, v in granted)
    binding = rendered.one("RoleBinding", "hub")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    (subject,) = binding["subjects"]
    sa = rendered.one("ServiceAccount", "hub")
    assert subject == {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    hub_spec = rendered.one("Deployment", "hub")["spec"]["template"]["spec"]
    assert hub_spec["serviceAccountName"] == sa["metadata"]["name"]
    # Only the hub talks to the API server.
    assert rendered.one("Deployment", "proxy")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def assert_container_locked_down(pod_spec, container):
    merged = {**pod_spec.get("securityContext", {}), **container.get("securityContext", {})}
    name = container["name"]
    assert merged.get("runAsNonRoot") is True, name
    assert merged.get("runAsUser", 1) != 0, name
    assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
    assert "add" not in container["securityContext"]["capabilities"], name
    assert not container["securityContext"].get("privileged"), name
    assert merged["seccompProfile"]["type"] == "RuntimeDefault", name
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), (name, kind)


def test_every_chart_container_is_locked_down(rendered):
    workloads = rendered.pod_specs()
    assert len(workloads) == 2
    for _, spec, _ in workloads:
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for container in spec["containers"] + spec.get("initContainers", []):
            assert_container_locked_down(spec, container)
            # Hub and proxy write only to mounted volumes.
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_secrets_are_generated_per_install(chart, renders):
    first = renders(None).secret_data(GENERATED_SECRET)
    second = render(chart, {}).secret_data(GENERATED_SECRET)
    assert set(first) == GENERATED_KEYS
    for key in GENERATED_KEYS:
        assert first[key] != second[key], key
        assert len(first[key]) >= 32, key
    # JupyterHub reads the cookie secret and crypt key as hex-encoded 32 bytes.
    for key in ("cookie-secret", "crypt-key"):
        assert len(bytes.fromhex(first[key])) == 32


def test_secrets_are_kept_on_upgrade_by_lookup(chart):
    live = {
        "proxy-token": "kept-proxy-token-" + "a" * 40,
        "cookie-secret": "ab" * 32,
        "crypt-key": "cd" * 32,
        "shared-password": "kept-shared-password",
    }
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": GENERATED_SECRET, "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in live.items()},
    }
    with fake_kube_api({GENERATED_SECRET: secret}) as config:
        upgraded = render(chart, {}, config=config, is_install=False, is_upgrade=True)
    assert upgraded.secret_data(GENERATED_SECRET) == live

    # A key missing from the live Secret (e.g. auth switched to shared-password
    # later) is generated; the others stay.
    del secret["data"]["shared-password"]
    with fake_kube_api({GENERATED_SECRET: secret}) as config:
        partial = render(chart, {}, config=config, is_install=False, is_upgrade=True).secret_data(GENERATED_SECRET)
    assert partial["proxy-token"] == live["proxy-token"]
    assert partial["shared-password"] not in ("", live["shared-password"])

    # Nothing live yet (first install against a cluster): generated.
    with fake_kube_api({}) as config:
        fresh = render(chart, {}, config=config).secret_data(GENERATED_SECRET)
    assert fresh["proxy-token"] != live["proxy-token"]


def test_existing_secret_replaces_generated_one(renders):
    r = renders("existing-secret")
    assert [s["metadata"]["name"] for s in r.of_kind("Secret")] == [f"{FULLNAME}-hub-config"]
    refs = [
        env["valueFrom"]["secretKeyRef"]
        for _, spec, _ in r.pod_specs()
        for env in spec["containers"][0]["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    ]
    assert {ref["name"] for ref in refs} == {"daas-hub-secrets"}
    assert {ref["key"] for ref in refs} == GENERATED_KEYS | {"admin-password"}


def test_no_secret_value_in_config_or_plain_env(renders):
    for name in ("oidc", "scicat", "external-db"):
        r = renders(name)
        for _, spec, _ in r.pod_specs():
            for env in spec["containers"][0]["env"]:
                if any(word in env["name"] for word in ("SECRET", "TOKEN", "PASSWORD", "DB_URL", "CRYPT")):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], env
        values = r.secret_data(f"{FULLNAME}-hub-config")["values.yaml"]
        assert "existingSecret" not in values


# -- network policies -------------------------------------------------------------------


def selects(selector, labels):
    return selector["matchLabels"].items() <= labels.items()


def peers(rule, key):
    return rule.get(key, [])


def test_network_policies_select_their_pods(renders):
    r = renders(None)
    policies = {p["metadata"]["name"]: p for p in r.of_kind("NetworkPolicy")}
    assert set(policies) == {f"{FULLNAME}-hub", f"{FULLNAME}-proxy", f"{FULLNAME}-singleuser"}
    for component in ("hub", "proxy"):
        labels = r.one("Deployment", component)["spec"]["template"]["metadata"]["labels"]
        matching = [n for n, p in policies.items() if selects(p["spec"]["podSelector"], labels)]
        assert matching == [f"{FULLNAME}-{component}"]
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert renders("no-netpol").of_kind("NetworkPolicy") == []


def ip_blocks(rules):
    return [peer["ipBlock"] for rule in rules for peer in rule.get("to", []) if "ipBlock" in peer]


def test_user_servers_reach_only_hub_dns_and_listed_endpoints(renders):
    default = renders(None)
    user = default.get("NetworkPolicy", f"{FULLNAME}-singleuser")["spec"]
    hub_labels = default.one("Deployment", "hub")["spec"]["template"]["metadata"]["labels"]
    dns, to_hub = user["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [p["port"] for p in to_hub["ports"]] == [8081]
    (peer,) = to_hub["to"]
    assert selects(peer["podSelector"], hub_labels)
    assert all("to" in rule for rule in user["egress"])  # no rule open to every destination
    # Only hub and proxy reach the servers.
    (ingress,) = user["ingress"]
    assert len(ingress["from"]) == 2 and all("podSelector" in p for p in ingress["from"])

    scicat = renders("scicat").get("NetworkPolicy", f"{FULLNAME}-singleuser")["spec"]["egress"]
    assert len(scicat) == 5
    blocks = {b["cidr"]: b for b in ip_blocks(scicat)}
    assert "except" not in blocks["10.20.0.15/32"]
    # The Karabo bridge rule covers everything: the chart excepts the metadata address.
    assert blocks["0.0.0.0/0"]["except"] == ["10.0.0.0/8", "169.254.169.254/32"]


def address_in(cidr, address):
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)


def test_no_policy_opens_the_metadata_address(chart, rendered):
    for policy in rendered.of_kind("NetworkPolicy"):
        egress = policy["spec"]["egress"]
        assert all("to" in rule for rule in egress if not rule.get("ports")), policy["metadata"]["name"]
        for block in ip_blocks(egress):
            if address_in(block["cidr"], METADATA_ADDRESS):
                assert any(address_in(e, METADATA_ADDRESS) for e in block.get("except", [])), block


def test_metadata_address_is_excepted_from_any_listed_range(chart):
    ranges = ["169.254.0.0/16", "169.254.169.0/24", "128.0.0.0/1", "160.0.0.0/4", "0.0.0.0/0"]
    outside = ["169.255.0.0/16", "10.0.0.0/8", "0.0.0.0/1", "fd00::/8"]
    rules = [{"to": [{"ipBlock": {"cidr": c}}], "ports": [{"port": 9000}]} for c in ranges + outside]
    values = {"networkPolicy": {"singleuser": {"egress": {"storage": rules}}}}
    egress = render(chart, values).get("NetworkPolicy", f"{FULLNAME}-singleuser")["spec"]["egress"]
    blocks = {b["cidr"]: b for b in ip_blocks(r for r in egress if r["ports"] == [{"port": 9000}])}
    assert len(blocks) == len(ranges + outside)
    for cidr in ranges:
        assert "169.254.169.254/32" in blocks[cidr]["except"], cidr
    for cidr in outside:
        assert "except" not in blocks[cidr], cidr

    values = {"networkPolicy": {"singleuser": {"allowInternet": True}}}
    egress = render(chart, values).get("NetworkPolicy", f"{FULLNAME}-singleuser")["spec"]["egress"]
    internet = egress[-1]["to"][0]["ipBlock"]
    assert internet["cidr"] == "0.0.0.0/0"
    assert set(internet["except"]) == {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}


def test_metadata_address_itself_is_refused(chart):
    rule = {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}
    with pytest.raises(helm.HelmRenderError, match="169.254.169.254/32 is the cloud metadata address"):
        render(chart, {"networkPolicy": {"singleuser": {"egress": {"other": [rule]}}}})


def test_proxy_api_only_from_hub(renders):
    r = renders(None)
    spec = r.get("NetworkPolicy", f"{FULLNAME}-proxy")["spec"]
    hub_labels = r.one("Deployment", "hub")["spec"]["template"]["metadata"]["labels"]
    public, api = spec["ingress"]
    assert public["ports"] == [{"port": "http"}] and "from" not in public
    assert api["ports"] == [{"port": "api"}]
    (peer,) = api["from"]
    assert selects(peer["podSelector"], hub_labels)
