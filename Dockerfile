# One image for every Enlace service; the command picks the service:
#   docker run enlace python -m services.intake      (referral, followup, notifications, ops)
# Built by `docker build -t enlace .`; checked by hadolint in `make lint`.
#
# The base is pinned to a patch release on Debian 12 (the glibc every dependency's
# wheel is built for). Pin it by digest in the registry you build from
# (python:3.11.14-slim-bookworm@sha256:...): the digest cannot be looked up offline.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: the dependencies in a virtualenv, from wheels only (no compiler here) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
# The pinned runtime dependencies of pyproject.toml, without the dev extras.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && python -m venv /opt/enlace \
 && /opt/enlace/bin/pip install --only-binary=:all: --requirement requirements.txt
COPY contracts /app/contracts
COPY services /app/services
# What the services read from deploy/ at run time: the directory and routing rules,
# the Kafka declaration, and the local profile's demo files, which production
# refuses by name and by key hash (services/kit/production.py).
COPY deploy/directory.yaml deploy/routing.yaml deploy/kafka-access.yaml /app/deploy/
COPY deploy/local/agencies.yaml deploy/local/demo-api-keys.txt /app/deploy/local/
RUN /opt/enlace/bin/python -m compileall -q /app/contracts /app/services

# --- runtime: the virtualenv and the sources, as an unprivileged user ---------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="enlace" \
      org.opencontainers.image.description="Enlace referral backbone: intake, referral, followup, notifications, ops"
# /data: the writable state of the compose stack's volumes (intake's key files
# there, the local providers' mail and messages), owned by the service user.
RUN groupadd --system --gid 10001 enlace \
 && useradd --system --uid 10001 --gid enlace --home-dir /app --shell /usr/sbin/nologin enlace \
 && install -d -o enlace -g enlace -m 0700 /data /data/kek
COPY --from=build /opt/enlace /opt/enlace
COPY --from=build --chown=root:root /app /app
ENV PATH=/opt/enlace/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENLACE_ENV=production \
    ENLACE_HTTP_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
# Each service listens on its own port (8001-8005, ENLACE_HTTP_PORT).
EXPOSE 8001 8002 8003 8004 8005
# No default service: the orchestrator names it (python -m services.<name>).
CMD ["python", "-c", "import sys; sys.exit('name a service: python -m services.intake|referral|followup|notifications|ops')"]
