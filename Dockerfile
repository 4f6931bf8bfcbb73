# syntax=docker/dockerfile:1
# One Dockerfile for every app: the build arguments pick which (docker-bake.hcl lists them all, and
# docker-compose.yml passes the same arguments). An app's image holds its API (`serve`) and, for the four
# services, its outbox relay and event consumers (`worker`) and its database migrations (`migrate`).
# Build from the repository root (the uv workspace and its lockfile live there):
#   docker buildx bake                      every app, tagged relearn/<app>:dev
#   docker build --build-arg APP=plan --build-arg APP_ENV_PREFIX=PLAN_ --build-arg APP_PORT=8082 \
#     -t relearn/plan:dev .
#
#   APP             the member's folder under services/ and its package relearn-<APP> (evaluation, plan,
#                   sessions, device-gateway, subscriptions, authorization, audit, reports, front-door)
#   APP_ENV_PREFIX  its settings' environment prefix (PLAN_): the image sets <prefix>HOST and <prefix>PORT
#   APP_PORT        its settings' port, EXPOSEd
#   APP_EXTRAS      optional extras of its package (front-door: dev-issuer, for the development issuer)

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
ARG APP
ARG APP_EXTRAS=""
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first, from the lockfile only: this layer is rebuilt only when
# uv.lock or a manifest changes. Every member's manifest is copied so the workspace resolves.
COPY uv.lock pyproject.toml ./
COPY shared/pyproject.toml shared/
COPY tools/devtools/pyproject.toml tools/devtools/
COPY tools/dev-issuer/pyproject.toml tools/dev-issuer/
COPY services/evaluation/pyproject.toml services/evaluation/
COPY services/plan/pyproject.toml services/plan/
COPY services/sessions/pyproject.toml services/sessions/
COPY services/device-gateway/pyproject.toml services/device-gateway/
COPY services/subscriptions/pyproject.toml services/subscriptions/
COPY services/authorization/pyproject.toml services/authorization/
COPY services/audit/pyproject.toml services/audit/
COPY services/reports/pyproject.toml services/reports/
COPY services/front-door/pyproject.toml services/front-door/
# APP_EXTRAS is a list of extra names ("" for none); each becomes an --extra flag.
RUN --mount=type=cache,target=/root/.cache/uv \
    set -- ; for extra in ${APP_EXTRAS}; do set -- "$@" --extra "${extra}"; done; \
    uv sync --frozen --no-dev --no-install-workspace --package "relearn-${APP}" "$@"
# Then the code: the shared plumbing, the app and (with an extra) the tool it names, installed
# non-editable so the runtime image needs nothing from /src. Migrations ship inside the package.
COPY shared/src shared/src
COPY tools/dev-issuer/src tools/dev-issuer/src
COPY services/${APP}/src services/${APP}/src
RUN --mount=type=cache,target=/root/.cache/uv \
    set -- ; for extra in ${APP_EXTRAS}; do set -- "$@" --extra "${extra}"; done; \
    uv sync --frozen --no-dev --no-editable --package "relearn-${APP}" "$@" \
    && ln -s "relearn-${APP}" /app/.venv/bin/relearn-app

FROM ${PYTHON_IMAGE}
ARG APP
ARG APP_ENV_PREFIX
ARG APP_PORT=8080
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" relearn \
    && useradd --system --uid "${APP_UID}" --gid relearn --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin relearn \
    && install -d -o relearn -g relearn -m 0750 /var/lib/relearn
# The virtualenv stays owned by root: the service cannot rewrite its own code.
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ${APP_ENV_PREFIX}HOST=0.0.0.0 \
    ${APP_ENV_PREFIX}PORT=${APP_PORT}
WORKDIR /app
LABEL org.opencontainers.image.title="relearn-${APP}" \
      org.opencontainers.image.source="services/${APP}"
USER ${APP_UID}:${APP_UID}
EXPOSE ${APP_PORT}
# `relearn-app` is the app's own console script (relearn-<APP>); deployments name it and the command
# (`relearn-plan worker`, `relearn-plan migrate`).
CMD ["relearn-app", "serve"]
