# syntax=docker/dockerfile:1
# One image for every Leadflow service; the command picks the service:
#   leadflow serve              the embedded mode (default)
#   leadflow run gateway        a gateway of the distributed mode
#   leadflow run processor      the conversation processor
#   leadflow run projector      read models in Redis and the read API
#   leadflow run policy         the policy service (PyMC fits, posterior snapshots)
#   leadflow run delivery       lead delivery (webhooks, Slack, e-mail; docs/delivery.md)
#   leadflow topics             create the Kafka topics (one-shot)
#   leadflow replay --kafka     rebuild the Redis read models (one-shot)
# See docs/distributed.md, docker-compose.yml, deploy/k8s/ and docs/runbook.md.
#
# Rules (tests/unit/test_dockerfile.py checks them): both stages use the same base,
# pinned to an exact version; the final stage runs as a non-root user and installs no
# compiler or other build tool; .dockerignore keeps the context to what the image needs.

# ---- build: the project and its dependencies in a venv --------------------------------------
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The dependencies first, exactly as locked (scripts/lock writes requirements.lock from
# pyproject.toml, every file with its hash): the same versions in every build, and a
# layer that stays cached until the lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY services/ services/
COPY gateway/ gateway/
COPY policy/ policy/
COPY projector/ projector/
COPY app/ app/

# A regular (non-editable) install of the project alone (--no-deps: everything it needs
# came from the lock above, aiokafka pinned there to the version the integration tier runs
# against): only the venv goes to the final stage. Every dependency ships manylinux wheels
# or is pure Python, so this stage needs no compiler either; pip check and the import check
# fail the build if the lock and pyproject.toml disagree or one went missing.
RUN pip install --no-deps . \
    && pip check \
    && cd / \
    && python -c "import aiokafka, redis, numba, pymc, app.cli"

# ---- final: the venv, the example flows, a non-root user --------------------------------------
FROM python:3.11.13-slim-bookworm

# PyMC compiles its model with PyTensor, whose default backend generates C and needs a
# compiler. There is none in this stage (no build tools in a runtime image): PyTensor is
# told not to look for one (`cxx=`) and to compile with Numba (`mode=NUMBA`; Numba and
# llvmlite are wheels that carry their own LLVM). Without `mode=NUMBA` it would fall back
# to its pure-Python VM, many times slower (one test of tests/integration/
# test_policy_model.py, one fit: 39 s with Numba, 33 s with g++; the whole module did not
# finish in 15 minutes with neither). The caches go to /tmp, the one writable place when
# the root filesystem is read-only (deploy/k8s mounts an emptyDir there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTENSOR_FLAGS=cxx=,mode=NUMBA,base_compiledir=/tmp/pytensor \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
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
# owned by the service user, so a volume mounted on them starts writable.
RUN mkdir -p /app/.leadflow/processor \
    && chown -R 10001:10001 /app/.leadflow

USER 10001:10001
EXPOSE 8080
CMD ["leadflow", "serve"]
