# Vigil: one image per process, all built from this file (build context: the repository root).
#   docker build --build-arg SERVICE=customer --build-arg PORT=8001 -t vigil-customer .
#   docker build --build-arg SERVICE=gateway --build-arg SERVICE_DIR=gateway --build-arg PORT=8000 -t vigil-gateway .
# A service image runs the web process (gunicorn, default), the Celery worker (`vigil-<service> worker`) and the
# outbox relay (`vigil-<service> relay`); the gateway image runs `migrate` and `create-admin` before `web`.
# docker-compose.yml passes these arguments for every image.
ARG SERVICE
# The folder holding the package's pyproject.toml: services/<service>, or gateway for the gateway.
ARG SERVICE_DIR=services/${SERVICE}

# --- build: install the package and its pinned dependencies into a virtual environment ---------
FROM python:3.11-slim AS build
ARG SERVICE_DIR
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
COPY shared/ ./shared/
COPY ${SERVICE_DIR}/ ./${SERVICE_DIR}/
RUN pip install --no-cache-dir -c constraints.txt ./shared ./${SERVICE_DIR}

# --- runtime: the virtual environment only, run as an unprivileged user -----------------------
FROM python:3.11-slim
ARG SERVICE
# Default web port of the process (vigil_shared.config.DEFAULT_PORTS); documentation for EXPOSE only.
ARG PORT
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIGIL_BIND_HOST=0.0.0.0 \
    VIGIL_VAR_DIR=/var/lib/vigil \
    SERVICE=${SERVICE}
RUN groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil --no-create-home --shell /usr/sbin/nologin vigil \
 && install -d -o vigil -g vigil /var/lib/vigil
COPY --from=build /opt/vigil /opt/vigil
WORKDIR /var/lib/vigil
USER 10001:10001
EXPOSE ${PORT}
# The web port the process itself reads: VIGIL_<SERVICE>_PORT, else its default.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; from vigil_shared.config import default_port, env_int; s = os.environ['SERVICE']; urllib.request.urlopen('http://127.0.0.1:%d/healthz' % env_int('VIGIL_%s_PORT' % s.upper(), default_port(s)), timeout=4)"]
CMD ["sh", "-c", "exec \"vigil-$SERVICE\" web"]
