# The stack's Redis where valkey/valkey:8 cannot be pulled: Debian's package on the gdc images'
# base (docker/build-offline.sh builds it as gdc-redis; REDIS_IMAGE=gdc-redis has compose use it).
# Bookworm packages Redis 7.0, not Valkey (a fork of Redis 7.2 that gdc uses through the same
# commands), so the image also answers to valkey-server and valkey-cli: docker-compose.yml's
# command (append-only file, fsynced every second, in /data) and health check run unchanged.
# Like the valkey image, the server leaves protected mode off: the container's network is what
# keeps others out, and in protected mode it would refuse the API on the compose network.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && printf '#!/bin/sh\nexec redis-server "$@" --protected-mode no\n' > /usr/local/bin/valkey-server \
    && chmod 755 /usr/local/bin/valkey-server \
    && ln -s /usr/bin/redis-cli /usr/local/bin/valkey-cli \
    && mkdir /data && chown redis:redis /data
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD ["valkey-cli", "ping"]
CMD ["valkey-server", "--appendonly", "yes", "--appendfsync", "everysec"]
