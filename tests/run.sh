#!/usr/bin/env bash
# The test command: installs the client tools the tests drive (when missing), builds the
# suite once, runs all of it (unit tests and every file in tests/), then runs again, with
# Ferry storing blobs on S3 (FERRY_TEST_STORAGE=s3, an s3s-fs server per registry), the tests
# whose requests reach the blob store, and again with Ferry's metadata on PostgreSQL
# (FERRY_TEST_METADATA=postgres, a PostgreSQL server per registry), the API, client and
# mirror suites. Prints each step's duration, ends with one summary line over all passes,
# and exits non-zero if anything failed.
#
#   tests/run.sh [extra arguments for the first pass's runner]
#
# Build: the whole suite is built as the container image's static binaries are
# (deploy/static-cargo: release, glibc linked statically), so the ferry under test is the
# one the image ships and the image needs no build of its own. Runner: `cargo nextest`
# (a process per test, in parallel, grouped by .config/nextest.toml) when it is installed,
# otherwise `cargo test`, which runs the same tests one binary at a time.
#
# Needs a Debian 12 machine with Rust; installing packages needs root (or sudo). Everything
# already present is left alone, so a second run goes straight to the build.
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

suite_started=$SECONDS
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
    "openssl openssl"
    "python3 python3"
    "chromium chromium"
)
missing=()
for entry in "${tools[@]}"; do
    read -r cmd pkg <<<"$entry"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
    fi
done
# The servers of the scale-out tests (tests/support/postgres.rs and balancer.rs), checked by
# path: their programs are not on PATH (PostgreSQL's are under /usr/lib/postgresql/<version>,
# nginx is in /usr/sbin, not on a normal user's PATH). Their packages' scripts want to start
# a cluster on 5432 and nginx on 80; in a container without an init system invoke-rc.d
# refuses or fails to, which is fine: the tests start their own on random ports.
if [ ! -d /usr/lib/postgresql ]; then
    missing+=(postgresql)
fi
if [ ! -x /usr/sbin/nginx ]; then
    missing+=(nginx-light)
fi
# GNU time, for peak memory in tests/migrate_metadata.rs (`time` is also a shell keyword,
# so `command -v` cannot tell whether it is installed).
if [ ! -x /usr/bin/time ]; then
    missing+=(time)
fi
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
    log "docker engine available: the docker client and container tests run"
else
    log "no docker engine: the docker client and container tests will print SKIP"
fi

# The S3 pass: the tests whose requests reach the blob store, as "binary: test names" (no
# names: every test of the binary). Whatever else the API, client and memory suites check
# (name, digest and range validation, routing, tags, catalog, referrers, mounts, deletes,
# disabled deletes: metadata and HTTP only) runs the same on every store and runs once, in
# the first pass. tests/s3.rs, the S3-only tests, starts its own S3 servers there too.
s3_tests=(
    "api_base_and_errors: names_at_the_limits_of_the_grammar_are_accepted"
    "api_blobs: get_and_head_return_content_and_headers zero_length_blob range_requests
        many_blobs_and_concurrent_reads"
    "api_manifests: oci_image_manifest_round_trip docker_schema2_manifest_and_manifest_list
        oci_index_empty_index_and_index_of_indexes large_manifests concurrent_pushes_all_succeed"
    "api_uploads: post_starts_a_session monolithic_post_with_digest
        monolithic_post_with_wrong_digest_stores_nothing monolithic_put_after_post
        streamed_patches_then_put chunked_patches_with_content_range_and_final_chunk_in_put
        out_of_order_chunk_is_refused_and_the_session_survives
        zero_length_patch_leaves_the_range_unchanged wrong_digest_at_put_stores_nothing
        upload_status cancelled_session_is_gone concurrent_uploads_of_the_same_blob
        uploads_past_the_blob_size_limit_are_refused
        large_blob_in_uneven_chunks_reads_back_whole_and_in_ranges"
    "clients: docker skopeo podman buildah containerd oras restart"
    "memory: one_gib_in_a_single_patch_and_back_out"
)
# Not again on S3, although they store blobs: the clients' docker_missing and
# skopeo_delete_disabled (a 404 and a 405), multi_arch_index (skopeo's pushes, as in
# skopeo), migrate_from_distribution (filesystem only); memory's single POST ?digest= (the
# same staging, multipart and copy path as the PATCH, 50 s of 1 GiB on s3s-fs).

# The PostgreSQL pass (FERRY_TEST_METADATA=postgres: a PostgreSQL server per registry, its
# metadata there): the API suite, the real clients, the mirror and the collector (ferry-gc
# against the database while the server serves), whose requests all reach the metadata
# store. tests/metadata.rs runs every method on both databases in the first pass already;
# tests/replicas.rs and tests/migrate_metadata.rs start their own PostgreSQL. Skipped there:
# collector tests that start ferry-gc on a configuration of their own naming an SQLite file.
pg_tests=(api_base_and_errors api_blobs api_manifests api_referrers api_search api_tags_catalog
    api_uploads clients mirror gc notifications)
pg_skip=(a_database_of_another_store_exits_2 registry2_command_lines_work)

# Human-readable seconds.
duration() { printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)); }

# Runs "$@" with its output shown and kept in $out, notes its status and duration.
out=$(mktemp "${TMPDIR:-/tmp}/ferry-tests.XXXXXX")
trap 'rm -f "$out"' EXIT
timings=()
run_step() {
    local name=$1 started=$SECONDS status=0
    shift
    log "$name: $*"
    "$@" 2>&1 | tee "$out" || status=$?
    local took=$((SECONDS - started))
    timings+=("$name $(duration "$took") (exit $status)")
    log "$name: exit status $status after $(duration "$took")"
    return "$status"
}

# Counts of the test runs, added up over the passes from the runners' own summaries.
passed=0 failed=0
count() {
    local counts p f
    if [ "$runner" = nextest ]; then
        # "Summary [ 12.345s] 120 tests run: 117 passed, 2 failed, 1 timed out, 3 skipped"
        counts=$(awk '/^ *Summary \[/ { p = f = 0
                for (i = 1; i < NF; i++) { w = $(i + 1); sub(/,$/, "", w)
                    if (w == "passed") p = $i; if (w == "failed" || w == "timed") f += $i } }
            END { print p + 0, f + 0 }' "$out")
    else
        # "test result: ok. 10 passed; 0 failed; ..." per test binary
        counts=$(awk '/^test result:/ {
                for (i = 1; i < NF; i++) { w = $(i + 1); sub(/;$/, "", w)
                    if (w == "passed") p += $i; if (w == "failed") f += $i } }
            END { print p + 0, f + 0 }' "$out")
    fi
    read -r p f <<<"$counts"
    passed=$((passed + p)) failed=$((failed + f))
}

if cargo nextest --version >/dev/null 2>&1; then
    runner=nextest
else
    # Installing it (cargo install cargo-nextest) would cost more build time than it saves
    # here: cargo test runs the same tests, one binary at a time.
    runner=cargo-test
    log "cargo nextest not found: running the tests with cargo test (slower, same tests)"
fi

status=0
run_step build deploy/static-cargo test --locked --no-run || status=$?

if [ "$status" -eq 0 ]; then
    if [ "$runner" = nextest ]; then
        run_step tests deploy/static-cargo nextest run --locked --no-fail-fast "$@" || status=$?
        count
        filter=
        for entry in "${s3_tests[@]}"; do
            binary=${entry%%:*}
            names=$(tr -s ' \n' ' ' <<<"${entry#*:}")
            expr=
            for name in $names; do expr+="${expr:+ | }test(=$name)"; done
            filter+="${filter:+ | }binary(=$binary)${expr:+ & ($expr)}"
        done
        FERRY_TEST_STORAGE=s3 run_step s3-tests deploy/static-cargo nextest run --locked \
            --no-fail-fast -E "$filter" || status=$?
        count
        filter=
        for binary in "${pg_tests[@]}"; do filter+="${filter:+ | }binary(=$binary)"; done
        filter="($filter)"
        for name in "${pg_skip[@]}"; do filter+=" & !test(=$name)"; done
        FERRY_TEST_METADATA=postgres run_step postgres-tests deploy/static-cargo nextest run \
            --locked --no-fail-fast -E "$filter" || status=$?
        count
    else
        run_step tests deploy/static-cargo test --locked --no-fail-fast "$@" || status=$?
        count
        for entry in "${s3_tests[@]}"; do
            binary=${entry%%:*}
            read -r -a names <<<"$(tr -s ' \n' ' ' <<<"${entry#*:}")"
            FERRY_TEST_STORAGE=s3 run_step "s3-tests ($binary)" deploy/static-cargo test \
                --locked --test "$binary" -- --exact "${names[@]}" || status=$?
            count
        done
        for binary in "${pg_tests[@]}"; do
            skips=()
            for name in "${pg_skip[@]}"; do skips+=(--skip "$name"); done
            FERRY_TEST_METADATA=postgres run_step "postgres-tests ($binary)" \
                deploy/static-cargo test --locked --test "$binary" -- "${skips[@]}" || status=$?
            count
        done
    fi
fi

log "durations: ${timings[*]/%/;} total $(duration $((SECONDS - suite_started)))"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # a step failed outside any test (build, runner): never report a clean run
fi
# The closing line, over all passes.
echo "tests/run.sh: $passed passed, $failed failed"
exit "$status"
