# The novita-gpu service as a container image: docs/deployment.md says how to run it.
#
#   docker build -t novita-gpu .
#   docker run -p 3000:3000 -v novita-data:/data -e API_KEYS=... -e NOVITA_API_KEY=... novita-gpu
#
# The service listens on 0.0.0.0 in here, and it refuses to listen beyond loopback without API_KEYS: the
# container exits at start with a one-line error until API_KEYS is set (or ALLOW_UNAUTHENTICATED=true, for
# a service that only a proxy which authenticates can reach). The image does not set either for you.
#
# Checked by hadolint (`make lint`) and by tests/unit/test_deploy_files.py (command, port, health path and
# every variable named here exist in the code).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with the pinned dependencies and the package ----------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/novita-gpu
ENV PATH=/opt/novita-gpu/bin:$PATH
WORKDIR /build
# Dependencies first, in their own layer: it is rebuilt only when the pins change, not on every code edit.
# requirements.lock also pins the dev tools; as constraints it only fixes the versions of what is installed.
# The client distribution (client/: the SDK and the novita-gpu command) goes in first: the service depends on
# it and it is not on PyPI. Stubs of both packages stand in for the sources in this layer.
COPY pyproject.toml requirements.lock README.md LICENSE ./
COPY client/pyproject.toml client/README.md ./client/
COPY client/src/novita_gpu_client/version.py ./client/src/novita_gpu_client/
RUN mkdir -p src/novita_gpu \
    && printf '__version__ = "0"\n' > src/novita_gpu/__init__.py \
    && touch client/src/novita_gpu_client/__init__.py \
    && pip install --no-cache-dir -c requirements.lock './client[cli]' \
    && pip install --no-cache-dir -c requirements.lock . \
    && pip uninstall --yes novita-gpu novita-gpu-client \
    && rm -rf src client/src
COPY client/src ./client/src
COPY src ./src
RUN pip install --no-cache-dir --no-deps -c requirements.lock ./client \
    && pip install --no-cache-dir --no-deps -c requirements.lock . \
    && novita-gpu --help > /dev/null

# -- runtime: the environment above, a user without privileges, and a data volume --------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 novita \
    && useradd --system --uid 10001 --gid novita --home-dir /data --no-create-home --shell /usr/sbin/nologin novita \
    && mkdir -p /data \
    && chown novita:novita /data \
    && chmod 0700 /data
COPY --from=build /opt/novita-gpu /opt/novita-gpu
# The SQLite store and the built-in emulator's account (used when NOVITA_API_KEY is unset) live in /data;
# with PostgreSQL (DATABASE_URL=postgresql+asyncpg://...) nothing of value is written there.
ENV PATH=/opt/novita-gpu/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite+aiosqlite:////data/novita-gpu.db \
    EMULATOR_STATE=/data/novita-gpu.emulator.db
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 3000
# /health answers 200 when healthy or degraded, 503 when the store does not answer. Plain Python, no curl
# in a slim image; no proxy, whatever HTTP_PROXY says; the loopback name passes ALLOWED_HOSTS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:%s/health' % os.environ.get('PORT', '3000'), timeout=4)"]
# SIGTERM (docker stop) shuts the service down gracefully; give it the time (docker stop -t / stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["novita-gpu", "serve", "--host", "0.0.0.0"]
