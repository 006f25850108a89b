# syntax=docker/dockerfile:1.7
#
# One image for every SCRM process. The container's command picks what runs:
#   contact-svc api | contact-svc worker | tag-svc api | ... | metrics-svc worker
#   scrm token ... | scrm-demo ...
# Build:  docker build -t scrm/platform:dev .
# Run:    docker run --rm -e SCRM_JWT_SECRET=... -e SCRM_DATABASE_URL=... \
#           -e SCRM_KAFKA_BOOTSTRAP=... -p 8001:8001 scrm/platform:dev contact-svc api

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

############################ build: resolve the lock into /app/.venv ############################
FROM ${PYTHON_IMAGE} AS build

# The uv that wrote uv.lock (lock format revision 5 needs a recent uv).
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# The venv must be created from the same interpreter path the runtime stage has
# (/usr/local/bin/python3.11), so never let uv fetch its own Python.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Third-party dependencies first: this layer only changes when uv.lock or a pyproject does.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY devstack/pyproject.toml devstack/
COPY services/contact-svc/pyproject.toml services/contact-svc/
COPY services/tag-svc/pyproject.toml services/tag-svc/
COPY services/campaign-svc/pyproject.toml services/campaign-svc/
COPY services/metrics-svc/pyproject.toml services/metrics-svc/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace

# Then the workspace itself. Members stay editable on purpose: each service finds its
# migrations/ next to its sources (Path(__file__).parents[2]), which a wheel install would lose.
COPY shared/ shared/
COPY devstack/ devstack/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
 && /app/.venv/bin/python -m compileall -q shared/src devstack/src services

############################ runtime: no uv, no build caches, non-root ##########################
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="scrm-platform" \
      org.opencontainers.image.description="SCRM event platform services (contact, tag, campaign, metrics)"

RUN groupadd --system --gid 10001 scrm \
 && useradd --system --uid 10001 --gid scrm --home-dir /app --no-create-home --shell /usr/sbin/nologin scrm

WORKDIR /app
# Same path as in the build stage: the editable installs and the venv's python link point here.
COPY --from=build --chown=root:root /app /app

ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCRM_ENV=prod \
    SCRM_HOST=0.0.0.0

# API ports (contact, tag, campaign, metrics) and the workers' Prometheus ports (api + 100).
EXPOSE 8001 8002 8003 8004 8101 8102 8103 8104

USER 10001:10001

# No default service: say which process to run, e.g. `contact-svc api`.
CMD ["scrm", "--help"]
