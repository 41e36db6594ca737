#!/usr/bin/env bash
# The test command: installs the client tools the tests drive (when missing), then runs the
# whole test suite (unit tests and every file in tests/), then the backend-agnostic suites
# once more with Ferry storing blobs on S3 (FERRY_TEST_STORAGE=s3, an s3s-fs server per
# registry), and exits non-zero if either pass fails.
#
#   tests/run.sh [extra `cargo test` arguments]
#
# The extra arguments go to the first pass only. Needs a Debian 12 machine with Rust;
# installing packages needs root (or sudo). Everything already present is left alone, so a
# second run goes straight to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'tests/run.sh: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        log "need root to run: $*"
        return 1
    fi
}

# Debian packages of the clients and the reference registry: "command package".
tools=(
    "skopeo skopeo"
    "podman podman"
    "buildah buildah"
    "umoci umoci"
    "containerd containerd"
    "ctr containerd"
    "docker-registry docker-registry"
    "jq jq"
    "python3 python3"
)
missing=()
for entry in "${tools[@]}"; do
    read -r cmd pkg <<<"$entry"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
    fi
done
if ! python3 -c 'import oras' >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=(python3-pip)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q "${missing[@]}"
fi

# The oras Python SDK (0.2.x: tests/clients/oras_client.py uses its request wrapper).
if ! python3 -c 'import oras, sys; sys.exit(not oras.__version__.startswith("0.2."))' >/dev/null 2>&1; then
    log "installing the oras Python SDK: pip install 'oras>=0.2.25,<0.3'"
    # Debian's own python3 refuses pip installs outside a venv (PEP 668) unless told.
    python3 -m pip install -q 'oras>=0.2.25,<0.3' \
        || python3 -m pip install -q --break-system-packages 'oras>=0.2.25,<0.3'
    python3 -c 'import oras; print("tests/run.sh: oras", oras.__version__, "installed")' >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found: install Rust (https://rustup.rs) first"
    exit 1
fi

# The S3 server the S3 tests run against (tests/s3.rs, and the FERRY_TEST_STORAGE=s3 pass).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v s3s-fs >/dev/null 2>&1; then
    log "installing s3s-fs: cargo install s3s-fs@0.14.1 --locked --features binary"
    cargo install s3s-fs@0.14.1 --locked --features binary
fi

if docker info >/dev/null 2>&1; then
    log "docker engine available: the docker client test runs"
else
    log "no docker engine: the docker client test will print SKIP"
fi

log "running: cargo test --locked $*"
status=0
cargo test --locked "$@" || status=$?
log "cargo test exited with status $status"

# The suites that do not depend on the storage backend, again on S3. (tests/s3.rs starts its
# own S3 servers and already ran above.)
s3_suites=(
    api_base_and_errors
    api_blobs
    api_manifests
    api_referrers
    api_tags_catalog
    api_uploads
    clients
    memory
)
s3_args=()
for suite in "${s3_suites[@]}"; do
    s3_args+=(--test "$suite")
done
log "running on S3: FERRY_TEST_STORAGE=s3 cargo test --locked ${s3_args[*]}"
s3_status=0
FERRY_TEST_STORAGE=s3 cargo test --locked "${s3_args[@]}" || s3_status=$?
log "cargo test on S3 exited with status $s3_status"

if [ "$status" -ne 0 ]; then
    exit "$status"
fi
exit "$s3_status"
