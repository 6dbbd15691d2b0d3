"""docker-compose.yml and the Dockerfile, read as files (Docker cannot run here): services, images, health, paths, variables."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.dags.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                    "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
ONE_SHOT = {"airflow-init"}


def _env_example_names() -> set[str]:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.M))


def test_the_services_of_a_real_airflow_deployment_are_there():
    assert set(AIRFLOW_SERVICES) | {"postgres", "airflow-init", "simulators"} <= set(SERVICES)
    for name, command in AIRFLOW_SERVICES.items():
        assert SERVICES[name]["command"] == command
        assert SERVICES[name]["build"] == "." and SERVICES[name]["image"].startswith("onenet-airflow:3.3.2")
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    env = SERVICES["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "onenet_duckdb 1" in " ".join(SERVICES["airflow-init"]["command"])


def test_the_image_extends_the_official_airflow_with_the_locked_dependencies():
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, flags=re.M)
    assert "--require-hashes -r /opt/onenet/requirements.lock" in dockerfile
    assert "--no-deps /opt/onenet" in dockerfile
    for src in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, flags=re.M):
        for path in src.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repo"
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and "var" in ignored and ".env" in ignored


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_every_long_running_service_has_a_healthcheck(name):
    check = SERVICES[name].get("healthcheck")
    assert check and check["test"] and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert SERVICES[name].get("restart") in ("always", "unless-stopped"), name


def test_start_order_waits_for_health_and_for_the_init():
    for name, service in SERVICES.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == expected, (name, dep)
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES:
        assert "airflow-init" in SERVICES[name]["depends_on"]


def test_the_simulators_are_an_optional_demo_reachable_from_the_tasks():
    sim = SERVICES["simulators"]
    assert sim["profiles"] == ["demo"]
    # They bind 127.0.0.1 only; tasks run in the scheduler (LocalExecutor), so share its network.
    assert sim["network_mode"] == "service:airflow-scheduler"
    assert all(not s.get("profiles") for n, s in SERVICES.items() if n != "simulators")  # the rest always runs


def test_warehouse_and_exports_are_volumes_and_connections_come_from_the_environment():
    volumes = SERVICES["airflow-scheduler"]["volumes"]
    assert "onenet-var:/opt/onenet/var" in volumes and "onenet-exports:/opt/onenet/exports" in volumes
    assert {"onenet-var", "onenet-exports", "postgres-db"} <= set(COMPOSE["volumes"])
    env = SERVICES["airflow-scheduler"]["environment"]
    assert env["ONENET_WAREHOUSE"].startswith("/opt/onenet/var/")
    assert SERVICES["airflow-scheduler"]["env_file"] == [{"path": ".env", "required": False}]
    names = _env_example_names()
    assert {f"AIRFLOW_CONN_ONENET_{s.upper()}" for s in ("hotline", "city_cases", "grid_registry",
                                                           "health_codes")} <= names


def test_every_host_path_and_variable_named_exists():
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    # ${VAR}, ${VAR:-default}, ${VAR:?message}; $$VAR is the container's own shell variable.
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used, "the compose file names no variables?"
    missing = used - _env_example_names()
    assert not missing, f"variables not documented in .env.example: {sorted(missing)}"
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repo"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"
        build = service.get("build")
        if build:
            assert (REPO / build / "Dockerfile").is_file()
        for env_file in service.get("env_file", []):
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert env_file.get("required") is False or (REPO / path).exists()
