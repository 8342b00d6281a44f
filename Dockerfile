# syntax=docker/dockerfile:1
# The canary controller image: `canary run` with a pinned, checksum-verified helm (docs/design.md §7).
#
#   docker build \
#     --build-arg HELM_VERSION=v3.16.2 \
#     --build-arg HELM_SHA256="$(curl -fsSL https://get.helm.sh/helm-v3.16.2-linux-amd64.tar.gz.sha256sum | cut -d' ' -f1)" \
#     -t canary:0.1.0 .
#
# HELM_SHA256 has no default on purpose: it must be the hash Helm publishes next to the
# release tarball, `https://get.helm.sh/helm-<HELM_VERSION>-linux-<arch>.tar.gz.sha256sum`
# (linked from https://github.com/helm/helm/releases), for the architecture being built
# (TARGETARCH, amd64 by default). The build fails without it, and when the download differs.
#
# Runs as UID/GID 65532 with a read-only root filesystem: everything written at run time goes
# to /tmp (HOME and helm's directories), an emptyDir in the chart (deploy/helm/canary).

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

# --- helm: downloaded and verified ------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS helm
ARG HELM_VERSION=v3.16.2
ARG HELM_SHA256
ARG TARGETARCH=amd64
RUN test -n "${HELM_SHA256}" \
    || { echo "HELM_SHA256 is required: the sha256 from https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz.sha256sum" >&2; exit 1; }
WORKDIR /tmp/helm
RUN python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
        "https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" helm.tar.gz \
    && echo "${HELM_SHA256}  helm.tar.gz" | sha256sum --check --strict - \
    && tar -xzf helm.tar.gz "linux-${TARGETARCH}/helm" \
    && install -m 0755 "linux-${TARGETARCH}/helm" /usr/local/bin/helm \
    && /usr/local/bin/helm version --short

# --- the Python package in a virtual environment -----------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/canary
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY canary ./canary
RUN /opt/canary/bin/pip install -c constraints.txt . \
    && /opt/canary/bin/canary --help >/dev/null

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="canary" \
      org.opencontainers.image.description="Progressive delivery for Helm releases on Istio: step traffic, judge it in Prometheus, roll back fast." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.10-slim-bookworm"
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
COPY --from=build /opt/canary /opt/canary
ENV PATH="/opt/canary/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data \
    HELM_DRIVER=secret
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["canary", "run"]
CMD ["--config", "/etc/canary/config/canary.yaml"]
