#!/usr/bin/env bash
# Builds gdc's images on a machine that reaches Debian's and Python's package registries but no
# image registry (docs/docker.md, "Building without Docker Hub"):
#   docker/build-offline.sh    gdc-base:bookworm, gdc-api, gdc-worker-cpu, gdc-redis and gdc-entry
# Run it from anywhere, as a user that may run docker. What it does:
#   1. the base image: Debian bookworm with Python 3.11, made by debootstrap from this machine's
#      Debian mirror (or GDC_BASE_IMAGE, e.g. a python image from a private registry);
#   2. torch: the pinned wheel from a local folder (pip's find-links, or TORCH_WHEELS), with the
#      wheels it depends on, served on loopback as a simple index (or TORCH_INDEX, a private one);
#   3. docker/Dockerfile's api and worker targets, docker/redis.Dockerfile and docker/entry.Dockerfile
#      (HAProxy, the compose stack's entry point in front of the API containers), on that base,
#      with host networking (pip reaches the registries, and the loopback index, as this
#      machine does) and BuildKit where the docker CLI has it (see builder below).
# Settings, from the environment:
#   GDC_BASE_IMAGE   the image to build on (default: gdc-base:bookworm, made here when missing)
#   DEBIAN_MIRROR    where debootstrap fetches Debian (default: this machine's apt source)
#   TORCH_INDEX      a simple index holding torch and its dependencies (default: the loopback one)
#   TORCH_WHEELS     the folder holding the torch wheel (default: pip's configured find-links)
#   TORCH_INDEX_PORT the loopback index's port (default 8765; fixed, since a build argument that
#                    changes invalidates Docker's cache of the torch layer)
#   PIP_INDEX_URL    the index of every other package (default: pip's)
# Docker keeps each layer as a cache: a second run rebuilds only what changed. Superseded images
# are removed at the end (the vfs storage driver keeps a full copy of every layer).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${GDC_BASE_IMAGE:-gdc-base:bookworm}
torch_pin=$(sed -n 's/^ARG TORCH_PIN=//p' docker/Dockerfile)
label=org.gdc.build-offline=1

say() { echo "build-offline: $*" >&2; }

# This machine's Debian mirror: the first URI of its apt sources (deb822 or one-line format).
debian_mirror() {
    local sources
    sources=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    local mirror
    mirror=$( (grep -h -o -E '^URIs: *\S+/debian$' <<<"$sources" | head -n1 | awk '{print $2}') || true)
    [ -n "$mirror" ] || mirror=$( (grep -h -o -E '^deb \S+/debian ' <<<"$sources" | head -n1 | awk '{print $2}') || true)
    [ -n "$mirror" ] || { say "no Debian mirror in /etc/apt/sources*: set DEBIAN_MIRROR"; exit 1; }
    echo "$mirror"
}

# The CA bundle pip trusts here: the base image needs it where TLS is intercepted on the way out.
ca_bundle() {
    local cert
    cert=$(python3 -m pip config get global.cert 2>/dev/null || true)
    echo "${cert:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
}

make_base() {
    if docker image inspect "$base" >/dev/null 2>&1; then
        say "base image $base is here"
        return
    fi
    [ "$base" = gdc-base:bookworm ] || { say "GDC_BASE_IMAGE=$base is not here: pull or load it first"; exit 1; }
    command -v debootstrap >/dev/null || { say "debootstrap is missing: apt-get install debootstrap"; exit 1; }
    local rootfs mirror
    rootfs=$(mktemp -d)
    chmod 755 "$rootfs"  # it becomes the image's /, which uid 10001 must be able to enter
    mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
    say "making $base with debootstrap from $mirror (a few minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" "$mirror" >/dev/null
    cp "$(ca_bundle)" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    ln -s python3 "$rootfs/usr/bin/python"  # the Dockerfile runs python, as python images name it
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # An imported image has no environment: PATH as Docker's default, so ENV PATH=...:$PATH keeps it.
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        --change 'CMD ["python3"]' - "$base" >/dev/null
    rm -rf "$rootfs"
}

# A simple index (PEP 503) of torch and its dependencies for the base image's Python, served on
# loopback; the folder is kept in ~/.cache so that later builds skip the download.
serve_torch_index() {
    local python wheels folder port=${TORCH_INDEX_PORT:-8765}
    python=$(docker run --rm --network none "$base" python3 -c 'import sys; print("%d%d" % sys.version_info[:2])')
    wheels=${TORCH_WHEELS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}
    folder=${XDG_CACHE_HOME:-$HOME/.cache}/gdc/torch-index/${torch_pin}-cp$python
    if [ ! -d "$folder/simple/torch" ]; then
        say "collecting $torch_pin (cp$python) and its dependencies${wheels:+ (torch from $wheels)}"
        local download
        download=$(mktemp -d)
        python3 -m pip download --quiet --dest "$download" --only-binary=:all: --python-version "$python" \
            ${wheels:+--find-links "$wheels"} "$torch_pin"
        rm -rf "$folder.partial" && mkdir -p "$folder.partial/simple"
        for wheel in "$download"/*.whl; do
            local name
            name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')  # the normalised project name
            mkdir -p "$folder.partial/simple/$name"
            mv "$wheel" "$folder.partial/simple/$name/"
        done
        rm -rf "$download" "$folder" && mv "$folder.partial" "$folder"
    fi
    say "torch index: $(ls "$folder/simple/torch") and $(($(ls "$folder/simple" | wc -l) - 1)) dependencies, on 127.0.0.1:$port"
    python3 -m http.server --bind 127.0.0.1 --directory "$folder" "$port" >/dev/null 2>&1 &
    index_server=$!
    trap 'kill $index_server' EXIT
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/simple/torch/')" 2>/dev/null && break
        sleep 0.1
    done
    TORCH_INDEX=http://127.0.0.1:$port/simple
}

# BuildKit builds only the stages a target needs and starts no container for ENV, CMD and the
# like, each of which costs a copy of the whole image under the vfs storage driver: the worker
# builds in half the time. The docker CLI reaches it through the buildx plugin from version 23
# on, and by itself before (Debian bookworm's docker.io, 20.10); else the legacy builder.
builder() {
    if docker buildx version >/dev/null 2>&1; then
        echo docker buildx build --load
        return
    fi
    local client
    for client in $(type -a -p docker); do
        if [ "$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" -lt 23 ] 2>/dev/null; then
            echo env DOCKER_BUILDKIT=1 "$client" build
            return
        fi
    done
    echo env DOCKER_BUILDKIT=0 docker build --force-rm
}

build() {
    local tag=$1 started=$SECONDS
    shift
    say "building $tag"
    $docker_build --network host --label "$label" --build-arg PYTHON_IMAGE="$base" \
        ${PIP_INDEX_URL:+--build-arg PIP_INDEX_URL="$PIP_INDEX_URL"} -t "$tag" "$@" >&2
    say "built $tag in $((SECONDS - started)) s: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

started=$SECONDS
docker_build=$(builder)
say "builder: $docker_build"
make_base
[ -n "${TORCH_INDEX:-}" ] || serve_torch_index
build gdc-api -f docker/Dockerfile --target api .
build gdc-worker-cpu -f docker/Dockerfile --target worker --build-arg TORCH_INDEX="$TORCH_INDEX" .
build gdc-redis -f docker/redis.Dockerfile docker
build gdc-entry -f docker/entry.Dockerfile docker
docker image prune --force --filter "label=$label" >/dev/null  # the images these tags replaced
docker builder prune --force --keep-storage 6GB >/dev/null  # BuildKit's cache: the newest builds' layers
say "done in $((SECONDS - started)) s: gdc-api, gdc-worker-cpu, gdc-redis (REDIS_IMAGE=gdc-redis for compose), gdc-entry"
