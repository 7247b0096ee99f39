"""docker-compose.yml is valid (validated by the real `docker compose config`, which needs no
engine) and publishes only the ports the design allows."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import REPO_ROOT

ALLOWED_PUBLISHED = {8003, 8004, 8005, 7474, 7687, 5432, 6379, 5672, 15672}
FORBIDDEN = {8006, 8007, 8010, 8011}


def compose_config() -> dict[str, object]:
    result = subprocess.run(
        ["docker", "compose", "-f", str(REPO_ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "JWT_SECRET_KEY": "x" * 40, "ENCRYPTION_KEYS": "test-key"},
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, object] = json.loads(result.stdout)
    return config


def test_compose_file_is_valid_and_publishes_only_allowed_ports() -> None:
    services = compose_config()["services"]
    assert isinstance(services, dict)
    assert {"api", "dashboard", "extractor", "graphinator", "tableinator", "curator", "schema-init"} <= set(
        services
    )
    assert "explore" not in services
    published = {int(port["published"]) for service in services.values() for port in service.get("ports", [])}
    assert published <= ALLOWED_PUBLISHED
    assert not published & FORBIDDEN
    assert {8003, 8004, 8005} <= published


def test_schema_init_is_a_one_shot_dependency_of_every_app_service() -> None:
    services = compose_config()["services"]
    assert isinstance(services, dict)
    assert services["schema-init"]["restart"] == "no"
    for name in ("api", "graphinator", "tableinator", "curator", "dashboard", "extractor"):
        condition = services[name]["depends_on"]["schema-init"]["condition"]
        assert condition == "service_completed_successfully", name


def test_official_images_are_used_for_the_stores() -> None:
    services = compose_config()["services"]
    assert isinstance(services, dict)
    assert services["neo4j"]["image"] == "neo4j:5.26-community"
    assert services["rabbitmq"]["image"].endswith("-management")


def test_compose_refuses_to_start_without_production_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET_KEY", "ENCRYPTION_KEYS"}}
    result = subprocess.run(
        ["docker", "compose", "-f", str(REPO_ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode != 0
    assert "JWT_SECRET_KEY" in result.stderr or "ENCRYPTION_KEYS" in result.stderr
