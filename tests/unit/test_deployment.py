"""The deployment files stay consistent with the code (no Docker engine runs the tests)."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from main import cli

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_database_a_one_shot_migration_the_api_and_the_projector() -> None:
    services = compose()["services"]
    assert {"postgres", "migrate", "api", "projector"} <= set(services)
    assert services["migrate"]["command"] == ["energy", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["api"]["command"][:2] == ["energy", "serve"]
    assert services["projector"]["command"] == ["energy", "project"]


def energy_commands() -> list[list[str]]:
    """Every ``energy ...`` command line in the compose file, health checks included."""
    found = []
    for service in compose()["services"].values():
        for line in (service.get("command"), service.get("healthcheck", {}).get("test")):
            if line and line[0] == "CMD":
                line = line[1:]
            if line and line[0] == "energy":
                found.append(line[1:])
    return found


def test_every_energy_command_in_compose_is_one_the_cli_has() -> None:
    commands = energy_commands()
    assert len(commands) == 5  # the API is checked with curl
    for args in commands:
        context = cli.make_context("energy", list(args), resilient_parsing=True)
        group: click.Command = cli
        for name in args:
            if name.startswith("-") or not isinstance(group, click.Group):
                break
            found = group.get_command(context, name)
            assert found is not None, args
            group = found
        assert not isinstance(group, click.Group), f"{args} names a group, not a command"


def test_every_service_has_a_health_check() -> None:
    for name, service in compose()["services"].items():
        assert "test" in service.get("healthcheck", {}), name


def test_api_and_projector_start_after_a_healthy_database_and_a_completed_migration() -> None:
    for name in ("api", "projector"):
        depends = compose()["services"][name]["depends_on"]
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
