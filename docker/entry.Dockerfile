# The stack's entry point: HAProxy on the published port, in front of however many API containers
# `docker compose up --scale api=N` runs (docker/haproxy.cfg). Debian's package on the gdc images'
# base, so it builds where no image registry is reached, as docker/redis.Dockerfile does
# (docker/build-offline.sh builds it as gdc-entry; compose builds it from python slim otherwise).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
FROM ${PYTHON_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --no-create-home gdc
COPY haproxy.cfg /etc/haproxy/gdc.cfg
# Where it listens, and the API containers' name and port on the compose network (Docker's DNS
# answers the name with every replica's address).
ENV ENTRY_BIND=:8000 API_ADDRESS=api:8000
# Numbered, as the gdc images' user, for runtimes that check runAsNonRoot.
USER 10001:10001
EXPOSE 8000
# Through the entry to an API: healthy once some API container answers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["haproxy", "-W", "-db", "-f", "/etc/haproxy/gdc.cfg"]
