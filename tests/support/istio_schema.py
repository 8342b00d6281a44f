"""Istio's own CRD schemas (the workspace's ``../shared/schemas/istio/``) as validators of an
object's ``spec``: every VirtualService canary writes, and the example chart's objects."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import jsonschema
import pytest

ISTIO_SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "istio"


@cache
def spec_validator(file: str) -> jsonschema.protocols.Validator:
    """Validator for the ``spec`` of the CRD whose ``openAPIV3Schema`` is ``file``.

    OpenAPI v3.0 schemas are JSON Schema draft 4 plus extensions (``nullable``,
    ``x-kubernetes-*``), which draft 4 validators ignore. A missing file skips the test, and
    fails it under ``CI=true`` (the shared directory sits beside the repository in CI).
    """
    path = ISTIO_SCHEMAS / file
    if not path.exists():
        message = f"Istio's schema not found at {path}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    schema = json.loads(path.read_text())
    assert schema["type"] == "object"
    spec_schema = schema["properties"]["spec"]
    assert spec_schema["additionalProperties"] is False  # unknown fields are rejected
    jsonschema.Draft4Validator.check_schema(spec_schema)
    return jsonschema.Draft4Validator(spec_schema)
