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
ONE_SHOT = {"airflow-init", "airflow-cli"}  # the CLI runs one command (`docker compose run`)
CELERY = {"redis": ["celery"], "airflow-worker": ["celery"], "flower": ["flower"]}


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
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"  # Celery with its profile
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "onenet_duckdb 1" in " ".join(SERVICES["airflow-init"]["command"])


def test_the_image_extends_the_official_airflow_with_the_locked_dependencies():
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, flags=re.M)
    assert "--require-hashes -r /opt/onenet/requirements.prod.lock" in dockerfile
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
    # the rest always runs, but the debug CLI and the Celery profiles' services
    assert all(not s.get("profiles") for n, s in SERVICES.items() if n not in ("simulators", "airflow-cli", *CELERY))


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


# --- issue #16: a production image, a closed api-server, secrets where they are used ----------------

def _pins(path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", (REPO / path).read_text(encoding="utf-8"), re.M))


def test_the_image_installs_a_production_lock_without_dev_tools_at_the_development_versions():
    prod, dev = _pins("requirements.prod.lock"), _pins("requirements.lock")
    assert not {"pytest", "pytest-timeout", "mypy", "ruff", "check-jsonschema", "types-requests"} & set(prod)
    assert {"apache-airflow", "great-expectations", "duckdb", "psycopg", "psycopg2-binary", "pymysql"} <= set(prod)
    assert {name: v for name, v in prod.items() if dev.get(name) != v} == {}  # the same versions as tested
    assert "--hash=sha256:" in (REPO / "requirements.prod.lock").read_text(encoding="utf-8")
    assert "requirements.lock" not in (REPO / "Dockerfile").read_text(encoding="utf-8").replace(
        "requirements.prod.lock", "")


def test_the_api_server_listens_on_loopback_unless_opened():
    (port,) = SERVICES["airflow-apiserver"]["ports"]
    assert port == "${AIRFLOW_API_BIND:-127.0.0.1}:${AIRFLOW_API_PORT:-8080}:8080"
    assert "AIRFLOW_API_BIND=127.0.0.1" in (REPO / ".env.example").read_text(encoding="utf-8")


def test_secrets_reach_only_the_services_that_use_them():
    jwt = "AIRFLOW__API_AUTH__JWT_SECRET"
    with_jwt = {n for n, s in SERVICES.items() if jwt in (s.get("environment") or {})}
    # not airflow-init, airflow-cli, simulators, postgres, redis, flower
    assert with_jwt == set(AIRFLOW_SERVICES) | {"airflow-worker"}
    # the sources' connections go where tasks run: the scheduler (LocalExecutor) or the Celery workers
    assert {n for n, s in SERVICES.items() if s.get("env_file")} == {"airflow-scheduler", "airflow-worker"}
    sim = SERVICES["simulators"]["environment"]
    assert not [k for k in sim if k.startswith("AIRFLOW")] and "ONENET_PSEUDONYM_KEY" not in sim
    assert not any("POSTGRES_PASSWORD" in str(v) for v in sim.values())
    # The admin's password: made once by airflow-init on a volume the api-server reads, never logged.
    for name in ("airflow-init", "airflow-apiserver"):
        assert "airflow-auth:/opt/airflow/auth" in SERVICES[name]["volumes"], name
    assert SERVICES["airflow-apiserver"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] \
        == "/opt/airflow/auth/passwords.json"
    assert "if [ ! -s /opt/airflow/auth/passwords.json ]" in SERVICES["airflow-init"]["command"][1]
    # The read side's variables (the lead's) stay in the Airflow services' common environment.
    for name in ("ONENET_DEPLOYMENT", "ONENET_PSEUDONYM_KEY", "ONENET_PUBLISHED", "ONENET_ACCESS_FILE",
                 "ONENET_ACCESS_LOG", "ONENET_SERVING_URL"):
        assert name in SERVICES["airflow-scheduler"]["environment"], name


def test_an_airflow_cli_debug_profile_like_the_official_compose():
    cli = SERVICES["airflow-cli"]
    assert cli["profiles"] == ["debug"] and cli["command"] == ["bash", "-c", "airflow"]
    assert cli["environment"]["CONNECTION_CHECK_MAX_COUNT"] == "0"
    assert cli["image"] == SERVICES["airflow-scheduler"]["image"]


def test_the_compose_file_is_valid_against_the_compose_spec_offline(tmp_path):
    """check-jsonschema's vendored compose-spec schema; a dead proxy proves nothing is fetched."""
    import shutil
    import subprocess

    tool = shutil.which("check-jsonschema", path=str(REPO / ".venv" / "bin")) or str(
        REPO / ".venv" / "bin" / "check-jsonschema")
    offline = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    run = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
                         capture_output=True, text=True, timeout=120, env=offline)
    assert run.returncode == 0 and "ok -- validation done" in run.stdout, run.stdout + run.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((REPO / "docker-compose.yml").read_text(encoding="utf-8").replace(
        "    command: scheduler\n", "    command: scheduler\n    restart_policy: always\n", 1), encoding="utf-8")
    run = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(broken)],
                         capture_output=True, text=True, timeout=120, env=offline)
    assert run.returncode != 0 and "restart_policy" in run.stdout, run.stdout



# --- issue #19: a Celery profile like Airflow's own compose, and a city's districts --------------

def test_a_celery_profile_with_redis_n_workers_and_flower():
    assert {n: SERVICES[n]["profiles"] for n in CELERY} == CELERY
    common = SERVICES["airflow-scheduler"]["environment"]
    assert common["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert common["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:")  # as upstream
    assert SERVICES["redis"]["image"].startswith("redis:") and "ports" not in SERVICES["redis"]  # not published
    worker = SERVICES["airflow-worker"]
    assert worker["command"] == "celery worker" and worker["image"] == SERVICES["airflow-scheduler"]["image"]
    assert worker["deploy"]["replicas"] == "${AIRFLOW_CELERY_WORKERS:-2}"
    # Workers run the tasks: through the api-server's execution API, on the same warehouse folders.
    assert worker["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == common["AIRFLOW__CORE__EXECUTOR"]
    assert worker["volumes"] == SERVICES["airflow-scheduler"]["volumes"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert "inspect ping" in worker["healthcheck"]["test"][1]
    # The scheduler waits for Redis when the profile is on, and starts without it when it is off.
    assert SERVICES["airflow-scheduler"]["depends_on"]["redis"] == {"condition": "service_healthy", "required": False}
    flower = SERVICES["flower"]
    assert flower["command"] == "celery flower" and flower["ports"] == [
        "${AIRFLOW_FLOWER_BIND:-127.0.0.1}:${AIRFLOW_FLOWER_PORT:-5555}:5555"]
    assert "AIRFLOW__API_AUTH__JWT_SECRET" not in flower["environment"] and not flower.get("env_file")
    # The workers' warm imports and the supervisor's 1 s check, as the tests and benches run them.
    from onenet.orchestration import airflow_env

    local = airflow_env(REPO / "var" / "airflow")
    for name in ("AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS", "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"):
        assert worker["environment"][name] == local[name], name


def test_the_districts_file_gives_each_district_a_pool_and_a_home_on_the_shared_volume(monkeypatch):
    from onenet import districts

    assert SERVICES["airflow-scheduler"]["environment"]["ONENET_DISTRICTS"] == "${ONENET_DISTRICTS:-}"
    init = SERVICES["airflow-init"]
    assert "python -m onenet.districts pools > /tmp/district-pools.json" in init["command"][1]
    assert "airflow pools import /tmp/district-pools.json" in init["command"][1]
    assert "./config:/opt/onenet/config:ro" in init["volumes"]
    found = districts.load(REPO / "compose" / "districts.example.toml")
    assert [d.name for d in found] == ["huangpu", "pudong"]
    for d in found:
        assert str(d.warehouse).startswith("/opt/onenet/var/"), d  # onenet-var, which the workers mount
        assert set(d.connections) == {"hotline", "city_cases", "grid_registry", "health_codes"}
    assert set(districts.pools(found)) == {"onenet_duckdb_huangpu", "onenet_duckdb_pudong"}
