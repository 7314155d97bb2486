"""Real responses checked against the shipped OpenAPI description."""

import re

from jsonschema import Draft202012Validator

from server_ext.extension.schema import openapi


def template_of(path: str) -> tuple[str, dict]:
    """The documented path template matching a concrete API path (without query)."""
    path = "/" + path.split("?")[0].strip("/")
    for template in openapi()["paths"]:
        rx = "^" + re.sub(r"\{[a-z_]+\}", "[^/]+", template) + "$"
        if re.match(rx, path):
            return template, openapi()["paths"][template]
    raise AssertionError(f"{path} is not documented in openapi.yaml")


def check_response(response, path: str):
    """Assert that *response* is documented for its method and status, and fits its schema."""
    template, item = template_of(path)
    method = response.request.method.lower()
    assert method in item, f"{method.upper()} {template} is not documented"
    documented = item[method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {template} answered {status}, not documented ({list(documented)})"
    spec = documented[status]
    if "$ref" in spec:
        spec = openapi()["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    schema = spec.get("content", {}).get("application/json", {}).get("schema")
    if schema is not None:
        validator = Draft202012Validator({**schema, "components": openapi()["components"]})
        errors = sorted(validator.iter_errors(response.json()), key=str)
        assert not errors, f"{method.upper()} {template} {status}: {errors[0].message} at {list(errors[0].absolute_path)}"
    return response


def check_message(message: dict):
    validator = Draft202012Validator({"$ref": "#/components/schemas/StreamMessage",
                                      "components": openapi()["components"]})
    errors = list(validator.iter_errors(message))
    assert not errors, errors[0].message
