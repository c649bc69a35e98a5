"""Schemathesis against the portal's own OpenAPI document: no 5xx, every response as documented.

The suite runs a bounded number of examples per operation (`PORTAL_HOSTILE_EXAMPLES`, default 6);
`make hostile` runs many more.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.app import create_app
from portal.settings import Settings
from portal.system import build_system
from tests.integration.portal_data import APPLICANTS, busy_month

EXAMPLES = int(os.environ.get("PORTAL_HOSTILE_EXAMPLES", "6"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="hostile",
                        extra={"dossier_lookups_per_minute": "1000000"})
    system = build_system(settings)
    busy_month(system.app)
    system.catch_up()
    app = create_app(settings, system)
    yield app
    system.close()


@pytest.fixture(scope="module")
def api_schema(portal):
    return schemathesis.openapi.from_asgi("/api/schema/openapi.json", portal)


def run_operation(operation, mode: GenerationMode, checks, examples: int) -> None:
    """Hypothesis drives schemathesis' strategy for one operation; every case is called and
    validated in process against the ASGI app."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call_and_validate(checks=checks)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
        assert "Traceback" not in response.text
        for name in APPLICANTS:
            assert name not in response.text

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_of_the_openapi_document(api_schema, mode):
    """Positive cases: no 5xx, status, content type and body as documented. Negative cases
    (data outside the schema): never a 5xx, never a stack trace."""
    checks = CHECKS if mode is GenerationMode.POSITIVE else [not_a_server_error]
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 15
    failures = []
    for operation in operations:
        try:
            run_operation(operation, mode, checks, EXAMPLES)
        except Unsatisfiable:  # nothing to negate (no parameters, or free-text path segments)
            assert mode is GenerationMode.NEGATIVE
        except (Exception, BaseExceptionGroup) as e:  # collect every failing operation, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)
