# syntax=docker/dockerfile:1
# The NoN service: `nons serve` on port 8000, as the deployment guide runs it.
#
#   docker build -t non-app:latest .
#   docker run -d --name non-app \
#     -e NON_SERVE_TOKENS="me:$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" \
#     -e ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY -e NON_LOG_LEVEL=INFO \
#     -p 8000:8000 --stop-timeout 30 non-app:latest
#
# --stop-timeout 30: on `docker stop` the service drains for up to 27 s; Docker's default is 10 s.
#
# It serves /etc/nons/networks.yaml: deploy/networks.yaml is baked in (simulated provider, so the image answers
# without a key); mount your own spec over it (-v ./networks.yaml:/etc/nons/networks.yaml:ro) or use the
# Kubernetes ConfigMap in deploy/k8s/. Both stages use the same base image, so the virtual environment built in
# the first runs unchanged in the second.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install NoN and its `serve` extra into a virtual environment (binary wheels, no compiler) -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nons ./nons
RUN python -m venv /opt/nons \
    && /opt/nons/bin/pip install --no-cache-dir ".[serve]" \
    && /opt/nons/bin/pip uninstall --yes pip setuptools

# --- runtime: the environment, the default spec, a non-root user; no pip, no source tree, no build tools ---
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/nons/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NON_SERVE_HOST=0.0.0.0 \
    NON_SERVE_PORT=8000 \
    NON_ENVIRONMENT=production
RUN groupadd --system --gid 10001 nons \
    && useradd --system --uid 10001 --gid nons --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nons
COPY --from=build /opt/nons /opt/nons
COPY deploy/networks.yaml /etc/nons/networks.yaml
WORKDIR /srv/nons
USER 10001:10001
EXPOSE 8000
# The slim image has no curl: the check uses the interpreter that is there anyway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('NON_SERVE_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
# SIGTERM drains (readiness 503, in-flight runs finish, telemetry flushed) within Kubernetes' 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["nons", "serve"]
CMD ["/etc/nons/networks.yaml"]
