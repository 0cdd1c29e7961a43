"""The deployment files stay consistent with the code (no Docker engine runs the tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_database_a_one_shot_migration_and_the_api() -> None:
    services = compose()["services"]
    assert {"postgres", "migrate", "api"} <= set(services)
    assert services["migrate"]["command"] == ["energy", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["api"]["command"][:2] == ["energy", "serve"]


def test_every_service_has_a_health_check() -> None:
    for name, service in compose()["services"].items():
        assert "test" in service.get("healthcheck", {}), name


def test_the_api_starts_after_a_healthy_database_and_a_completed_migration() -> None:
    depends = compose()["services"]["api"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_services_built_from_the_dockerfile_copy_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in (
        "domain",
        "commands",
        "eventstore",
        "projections",
        "queries",
        "web",
        "migrations",
    ):
        assert f"COPY {package} {package}" in dockerfile
    assert "main.py" in dockerfile
