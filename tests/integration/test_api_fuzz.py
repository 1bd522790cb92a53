"""Fuzz the builder API from its own OpenAPI description: whatever a client sends, no 500s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.farm import Farm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Farm, str]]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    running = Farm(
        workdir, "http://127.0.0.1:9/simple/", poll_seconds=100000, targets=["cp311-cp311-linux_x86_64"]
    )
    token = running.cli("token", "create", "--builder", "fuzzer")
    running.serve()
    yield running, token
    running.close()


@pytest.fixture(scope="module")
def api_schema(farm: tuple[Farm, str]):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(farm[0].url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, farm: tuple[Farm, str]) -> None:  # type: ignore[no-untyped-def]
    for headers in ({"Authorization": f"Bearer {farm[1]}"}, {}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
