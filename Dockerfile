# One image for every service: `docker compose` picks the command per service.
FROM python:3.11-slim AS base

COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LOG_FORMAT=json \
    ENVIRONMENT=production \
    HEALTH_HOST=0.0.0.0

WORKDIR /app

# Dependencies first (cached while only the code changes).
COPY pyproject.toml uv.lock ./
COPY common/pyproject.toml common/
COPY extractor/pyproject.toml extractor/
COPY graphinator/pyproject.toml graphinator/
COPY tableinator/pyproject.toml tableinator/
COPY schema_init/pyproject.toml schema_init/
COPY api/pyproject.toml api/
COPY curator/pyproject.toml curator/
COPY dashboard/pyproject.toml dashboard/
RUN uv sync --all-packages --frozen --no-dev --no-install-workspace

# The extractor's native release normaliser (Rust, no crates; extractor/native.py loads it).
FROM rust:1-slim-bookworm AS native
WORKDIR /src
COPY extractor/rust_normalizer/ ./
RUN cargo build --release --offline

# Front-end packages for the web UI and dashboard, served locally.
FROM node:20-slim AS assets
WORKDIR /app
COPY package.json package-lock.json* ./
COPY scripts/vendor-assets.sh scripts/
RUN if [ -f package.json ]; then npm ci --no-audit --no-fund && mkdir -p api/static dashboard/static \
    && sh scripts/vendor-assets.sh; fi; mkdir -p api/static/vendor dashboard/static/vendor

FROM base
COPY . .
COPY --from=assets /app/api/static/vendor api/static/vendor
COPY --from=assets /app/dashboard/static/vendor dashboard/static/vendor
COPY --from=native /src/target/release/libdiscogs_normalizer.so extractor/rust_normalizer/target/release/
RUN uv sync --all-packages --frozen --no-dev \
    && useradd --system --uid 10001 --home-dir /app discogsography \
    && mkdir -p /data && chown -R discogsography /data
USER discogsography
VOLUME ["/data"]
CMD ["python", "-m", "api"]
