# syntax=docker/dockerfile:1
# One image for every Leadflow service; the command picks the service:
#   leadflow serve              the embedded mode (default)
#   leadflow run gateway        a gateway of the distributed mode
#   leadflow run processor      the conversation processor (faust)
#   leadflow topics             create the Kafka topics (one-shot)
# See docs/distributed.md and docker-compose.yml.

# ---- build: the project and its dependencies in a venv --------------------------------------
FROM python:3.11.7-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY services/ services/
COPY gateway/ gateway/
COPY policy/ policy/
COPY projector/ projector/

# A regular (non-editable) install: only the venv goes to the final stage. The distributed
# mode's clients are listed here as well because pyproject.toml does not declare them yet:
# faust-streaming and aiokafka, plus rocksdict, the bindings of faust's RocksDB table store
# (`rocksdb://`) that the processor keeps its state in. The versions are the ones the
# integration tier runs against. Every dependency ships manylinux wheels or is pure Python:
# no compiler needed.
RUN pip install . \
        "faust-streaming==0.15.3" \
        "aiokafka==0.14.0" \
        "rocksdict==0.3.29" \
    && cd / && python -c "import faust, aiokafka, rocksdict, redis, services.cli"

# ---- final: the venv, the example flows, a non-root user --------------------------------------
FROM python:3.11.7-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEADFLOW_HOST=0.0.0.0 \
    LEADFLOW_FLOWS_DIR=/app/examples/flows

RUN groupadd --gid 10001 leadflow \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin leadflow

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# services/catalog.py finds examples/flows relative to the source tree, which a
# non-editable install does not have: the flows live here (LEADFLOW_FLOWS_DIR above).
COPY examples/ /app/examples/
# The data directories (embedded: .leadflow; processor state: .leadflow/processor) are
# owned by the service user, so a named volume mounted on them starts writable.
RUN mkdir -p /app/.leadflow/processor \
    && chown -R 10001:10001 /app/.leadflow

USER 10001:10001
EXPOSE 8080
CMD ["leadflow", "serve"]
