"""The OpenAPI description shipped with the package, and request bodies checked against it."""

from __future__ import annotations

import functools
import json
from importlib.resources import files

from .errors import DaasRequestError


@functools.cache
def openapi() -> dict:
    import yaml

    return yaml.safe_load(files(__package__).joinpath("openapi.yaml").read_text())


@functools.cache
def validator(name: str):
    """A JSON Schema validator for ``components/schemas/<name>`` (OpenAPI 3.1 = JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    spec = openapi()
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return Draft202012Validator(schema)


def error_message(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        return f"{where + ': ' if where else ''}{error.message} (allowed: " \
               f"{', '.join(sorted(error.schema.get('properties', {})))})"
    if error.validator == "required":
        return f"{where + ': ' if where else ''}{error.message}"
    return f"{where or 'body'}: {error.message}"


def check(name: str, value) -> None:
    """Raise a 400 naming the first offending field when *value* does not fit schema *name*."""
    from jsonschema.exceptions import best_match

    error = best_match(validator(name).iter_errors(value))
    if error is not None:
        raise DaasRequestError(400, error_message(error))


def parse_body(raw: bytes, name: str) -> dict:
    """The JSON request body, checked against schema *name*."""
    try:
        value = json.loads(raw or b"null")
    except ValueError as e:
        raise DaasRequestError(400, f"the request body is not valid JSON: {e}")
    check(name, value)
    return value
