"""The shipped OpenAPI file and the server's handlers describe the same API."""

import re

import pytest
from jsonschema import Draft202012Validator

from server_ext.extension.handlers import default_handlers
from server_ext.extension.handlers.base import API
from server_ext.extension.schema import openapi

METHODS = ("get", "post", "put", "patch", "delete")


def served_operations():
    """(path template, method) for every registered handler method that the class itself defines."""
    from tornado.web import RequestHandler

    ops = set()
    for pattern, handler in default_handlers:
        assert pattern.startswith(API + "/")
        template = re.sub(r"\(\?P<([a-z_]+)>[^)]*\)", r"{\1}", pattern[len(API):])
        for method in METHODS:
            if getattr(handler, method) is not getattr(RequestHandler, method):
                ops.add((template, method))
    return ops


def documented_operations():
    return {(path, method) for path, item in openapi()["paths"].items() for method in METHODS if method in item}


def test_every_route_is_documented_and_every_documented_route_served():
    served, documented = served_operations(), documented_operations()
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_the_server_registers_these_handlers(server, api):
    """Each documented operation reaches our handler on the real server (no route 404)."""
    unknown = api.get("no-such-route")
    assert unknown.status_code == 404 and not unknown.headers["Content-Type"].startswith("application/json")
    for template, method in sorted(documented_operations()):
        path = re.sub(r"\{[a-z_]+\}", "0123456789abcdef", template).lstrip("/")
        if path.endswith("/ws"):
            continue  # a WebSocket: reached through the stream tests
        r = api(method.upper(), path, json={})
        # our handlers answer JSON with a message; tornado's own 404/405 page is HTML
        assert r.headers["Content-Type"].startswith("application/json"), (method, path, r.status_code)
        assert r.status_code != 405, (method, path)


def test_the_spec_is_valid_openapi_31():
    spec = openapi()
    assert spec["openapi"].startswith("3.1")
    for name, schema in spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                assert item[method]["responses"], (path, method)
                for ref in re.findall(r"'\$ref': '#/components/(\w+)/(\w+)'", str(item[method])):
                    assert ref[1] in spec["components"][ref[0]], ref


@pytest.mark.parametrize("name", ["ConversionRequest", "TrainingRequest", "PredictRequest", "StreamRequest",
                                  "ValidateRequest"])
def test_request_bodies_refuse_unknown_fields(name):
    assert openapi()["components"]["schemas"][name]["additionalProperties"] is False
