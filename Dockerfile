# onenet on Airflow: the official Airflow 3.3.2 image plus the project's locked dependencies.
# Build: docker compose build (or: docker build -t onenet-airflow:3.3.2 .)
FROM apache/airflow:3.3.2-python3.11

# The production lock pins every dependency with hashes, Airflow 3.3.2 itself included, at the
# versions `make setup` installs on a laptop, but without the dev tools (pytest, mypy, ruff):
# `make lock` writes both, the production one constrained to the development one.
COPY --chown=airflow:0 requirements.prod.lock /opt/onenet/requirements.prod.lock
RUN pip install --no-cache-dir --require-hashes -r /opt/onenet/requirements.prod.lock

# The onenet packages themselves (no dependency resolution: the lock already brought them).
COPY --chown=airflow:0 pyproject.toml README.md /opt/onenet/
COPY --chown=airflow:0 onenet /opt/onenet/onenet
COPY --chown=airflow:0 connectors /opt/onenet/connectors
COPY --chown=airflow:0 expectations /opt/onenet/expectations
COPY --chown=airflow:0 warehouse /opt/onenet/warehouse
COPY --chown=airflow:0 simulators /opt/onenet/simulators
RUN pip install --no-cache-dir --no-deps /opt/onenet

# The DAGs are baked in too (docker-compose.yml also mounts ./dags over them for development).
COPY --chown=airflow:0 dags /opt/airflow/dags

ENV ONENET_HOME=/opt/onenet/var
WORKDIR /opt/airflow
