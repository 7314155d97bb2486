"""values.schema.json: Helm refuses bad values before rendering, saying which key and why."""

import re

import helm_python as helm
import pytest

from .charttools import CHART_DIR, render

BAD_VALUES = [
    # (values, words the message must contain)
    ({"replicas": 2}, ["replicas", "not allowed"]),
    ({"hub": {"image": {"tag": "1"}, "replicaCount": 2}}, ["/hub", "replicaCount"]),
    ({"cull": {"timeout": "1h"}}, ["/cull/timeout", "integer"]),
    ({"cull": {"enabled": "yes"}}, ["/cull/enabled", "boolean"]),
    ({"auth": {"type": "ldap"}}, ["/auth/type", "shared-password"]),
    ({"hub": {"db": {"type": "external"}}}, ["/hub/db/external/secretName"]),
    ({"auth": {"type": "oauth"}}, ["/auth/oauth/clientId"]),
    ({"datasets": {"volume": {"name": "data", "nfs": {"server": "s", "path": "/"}}}}, ["/datasets/volume"]),
    ({"datasets": {"root": "data"}}, ["/datasets/root", "^/"]),
    ({"environments": [{"display_name": "no slug"}]}, ["/environments/0", "slug"]),
    ({"catalog": {"datasets": [{"pid": "x", "path": "relative/r1"}]}}, ["/catalog/datasets/0/path"]),
    # null removes a default, as with --set hub.resources.limits=null
    ({"hub": {"resources": {"limits": None}}}, ["/hub/resources", "limits"]),
    ({"networkPolicy": {"singleuser": {"egress": {"karaboBridge": [{"ports": [{"port": 4545}]}]}}}},
     ["/networkPolicy/singleuser/egress/karaboBridge/0", "to"]),
    ({"catalog": {"type": "scicat", "scicat": {"url": "scicat.example.org"}}}, ["/catalog/scicat/url"]),
]


@pytest.mark.parametrize("values, words", BAD_VALUES, ids=[str(i) for i in range(len(BAD_VALUES))])
def test_bad_values_fail_rendering_readably(chart, values, words):
    with pytest.raises(helm.HelmValuesError) as failure:
        render(chart, values)
    message = str(failure.value)
    for word in words:
        assert word in message, message
    assert "goroutine" not in message and "panic" not in message
    # The same check runs without rendering (what `helm install` does first).
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


def test_schema_accepts_the_defaults_and_every_test_values_file(chart, rendered):
    chart.validate_schema(rendered.values)
    chart.validate_schema({})


def test_schema_covers_every_default_value(chart):
    """Every key of values.yaml is described by the schema (nothing slips past unchecked)."""
    schema = chart.schema

    def walk(values, node, path):
        assert node.get("type") in ("object", ["object"]) or "properties" in node, path
        properties = node.get("properties", {})
        for key, value in values.items():
            if key in properties:
                child = properties[key]
                if isinstance(value, dict) and value and "properties" in child:
                    walk(value, child, f"{path}/{key}")
            else:
                assert node.get("additionalProperties") not in (False, None), f"{path}/{key}"

    walk(chart.values, schema, "")
    assert schema["additionalProperties"] is False


def test_every_value_is_documented():
    """Each key of values.yaml has a comment above it (list entries are documented by their list)."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    in_list_item = None
    for number, line in enumerate(lines, 1):
        match = re.match(r"^( *)(- )?([A-Za-z_][\w-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        if match.group(2):
            in_list_item = indent
        elif in_list_item is not None and indent > in_list_item:
            continue
        else:
            in_list_item = None
        if not lines[number - 2].strip().startswith("#"):
            undocumented.append(f"{number}: {line.strip()}")
    assert not undocumented, undocumented
