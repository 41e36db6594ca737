#!/bin/sh
# Build the Ferry container image on a machine with no access to a container registry:
#
#   deploy/build-local-image.sh [TAG]        (default TAG: ferry:local)
#
# It builds the same deploy/Dockerfile users build, with two build arguments swapped:
#   BUILDER_IMAGE  a Debian image made here from Debian packages (debootstrap --variant=minbase,
#                  then `docker import`), instead of rust:1-bookworm pulled from Docker Hub.
#                  It is kept as ferry-builder-base:<codename> and reused by later runs.
#   PREBUILT=1     the binaries are compiled here on the host with cargo (statically linked,
#                  exactly the flags the Dockerfile uses: deploy/static-cargo) and handed to
#                  the build stage through the build context, instead of compiling inside
#                  the image.
# The runtime stage (`FROM scratch`) is the one users get; it needs no base image at all.
#
# Needs: docker, cargo; installs debootstrap with apt-get when missing.
# Environment: CARGO_TARGET_DIR (default <repo>/target), DEBIAN_MIRROR (default: the Debian
# mirror of this machine's apt sources), FERRY_BUILDER_BASE (use this image as the builder
# instead of making one), FERRY_BINARY (a static `ferry` built by deploy/static-cargo to use
# instead of building it: the test command's own build), DOCKER_BUILDKIT (default 0: the
# classic builder works offline with local base images everywhere).
set -eu

TAG=${1:-ferry:local}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

log() { printf 'build-local-image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

# --- 1. The builder base image, from Debian packages ------------------------------------
codename() {
    if [ -r /etc/os-release ]; then
        . /etc/os-release
        if [ "${ID:-}" = debian ] && [ -n "${VERSION_CODENAME:-}" ]; then
            echo "$VERSION_CODENAME"; return
        fi
    fi
    echo bookworm
}

# The first Debian mirror of this machine's apt sources that serves SUITE (one-line and
# deb822 formats); deb.debian.org when none is found.
debian_mirror() {
    suite=$1
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        m=$(awk -v s="$suite" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i+1) == s) { print $i; exit } }' "$f")
        [ -n "$m" ] && { echo "$m"; return; }
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        m=$(awk -v s="$suite" '
            function flush() { if (isdeb && uri != "" && hassuite) { print uri; found = 1; exit } }
            /^[ \t]*$/ { flush(); uri = ""; hassuite = 0; isdeb = 0; next }
            /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1 }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hassuite = 1 }
            END { if (!found) flush() }' "$f")
        [ -n "$m" ] && { echo "$m"; return; }
    done
    echo http://deb.debian.org/debian
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return
    [ "$(id -u)" = 0 ] || die "debootstrap is missing and installing it needs root"
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q debootstrap >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } \
        || die "cannot install debootstrap with apt-get"
}

SUITE=$(codename)
BASE=${FERRY_BUILDER_BASE:-ferry-builder-base:$SUITE}
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    [ -z "${FERRY_BUILDER_BASE:-}" ] || die "FERRY_BUILDER_BASE=$BASE is not a local image"
    ensure_debootstrap
    MIRROR=${DEBIAN_MIRROR:-$(debian_mirror "$SUITE")}
    ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/ferry-rootfs.XXXXXX")
    trap 'rm -rf "$ROOTFS"' EXIT
    log "making $BASE: debootstrap --variant=minbase $SUITE from $MIRROR (once per machine)"
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" \
        > "$ROOTFS.log" 2>&1 || { tail -n 30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; die "debootstrap failed"; }
    rm -f "$ROOTFS.log"
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$ROOTFS"
    trap - EXIT
fi

# --- 2. The binaries, built on the host as the Dockerfile builds them ----------------------
CTX=$(mktemp -d "${TMPDIR:-/tmp}/ferry-context.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/deploy/prebuilt"

# Prints the executables cargo produced, one per line.
cargo_bins() {
    CARGO=$CARGO "$REPO/deploy/static-cargo" build --locked --target-dir "$TARGET_DIR" \
        --message-format=json-render-diagnostics "$@" \
        | grep -o '"executable":"[^"]*"' | cut -d'"' -f4
}
if [ -n "${FERRY_BINARY:-}" ]; then
    [ -x "$FERRY_BINARY" ] || die "FERRY_BINARY=$FERRY_BINARY is not an executable"
    log "using $FERRY_BINARY (FERRY_BINARY)"
    cp "$FERRY_BINARY" "$CTX/deploy/prebuilt/ferry"
    bins=
else
    log "deploy/static-cargo build --bin ferry in $TARGET_DIR"
    bins=$(cd "$REPO" && cargo_bins --bin ferry) || die "cargo build failed"
fi
entry=$(cd "$REPO" && cargo_bins --manifest-path deploy/entrypoint/Cargo.toml) || die "cargo build of the entrypoint failed"
for b in $bins $entry; do
    case $(basename "$b") in
        ferry|ferry-entrypoint) cp "$b" "$CTX/deploy/prebuilt/" ;;
    esac
done
[ -f "$CTX/deploy/prebuilt/ferry" ] || die "cargo did not produce ferry"
[ -f "$CTX/deploy/prebuilt/ferry-entrypoint" ] || die "cargo did not produce ferry-entrypoint"
cp "$REPO/deploy/config.yml" "$CTX/deploy/config.yml"

# --- 3. The image ---------------------------------------------------------------------------
log "docker build -t $TAG (builder $BASE, prebuilt: $(ls "$CTX/deploy/prebuilt" | tr '\n' ' '))"
docker build --pull=false --force-rm \
    --build-arg BUILDER_IMAGE="$BASE" --build-arg PREBUILT=1 \
    --target runtime -t "$TAG" -f "$REPO/deploy/Dockerfile" "$CTX" >&2 \
    || die "docker build failed"
# The classic builder keeps the build stage as an untagged image: drop ours.
docker image prune -f --filter label=org.ferry.stage=build >/dev/null 2>&1 || true

size=$(docker image inspect --format '{{.Size}}' "$TAG")
log "built $TAG: $(( size / 1000000 )) MB ($size bytes) uncompressed"
echo "$TAG"
