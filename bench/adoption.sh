#!/usr/bin/env bash
# Adoption benchmark: how fast `ferry import` indexes a registry:2 (Distribution) data
# directory in place.
#
#   bench/adoption.sh [REPOSITORIES] [BLOBS_PER_REPOSITORY]     (default 1000 20)
#
# Generates Distribution's on-disk layout directly as files in a temporary directory:
# REPOSITORIES repositories (`bench/ns<k>/repo<i>`), each with BLOBS_PER_REPOSITORY small
# blobs of its own (one is the image config, the rest layers), one OCI manifest referencing
# them, and a tag. Then times a release `ferry import --json` on it, prints repositories/s
# and blobs/s, and records the result in bench/ADOPTION.md (the section between the
# `adoption-result` markers). The temporary directory is removed on exit.
#
# Builds with `cargo build --release` (honours CARGO_TARGET_DIR). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

REPOS=${1:-1000}
PER_REPO=${2:-20}
TIMEOUT=${ADOPTION_TIMEOUT:-600}

cargo build --release --bin ferry >&2
FERRY="${CARGO_TARGET_DIR:-target}/release/ferry"
[ -x "$FERRY" ] || { echo "adoption.sh: no $FERRY" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-adoption.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ROOT="$WORK/data"

# --- generate Distribution's layout -------------------------------------------------------
gen_started=$(date +%s.%N)
python3 - "$ROOT" "$REPOS" "$PER_REPO" <<'PY'
import hashlib, json, os, sys

root, repos, per_repo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v2 = os.path.join(root, "docker", "registry", "v2")

def blob(data: bytes):
    hexd = hashlib.sha256(data).hexdigest()
    d = os.path.join(v2, "blobs", "sha256", hexd[:2], hexd)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "data"), "wb") as f:
        f.write(data)
    return "sha256:" + hexd, len(data)

def link(path, digest):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "link"), "w") as f:
        f.write(digest)  # no newline, as Distribution writes it

for i in range(repos):
    repo = os.path.join(v2, "repositories", "bench", f"ns{i % 10}", f"repo{i:05d}")
    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "repo": i}).encode())
    layers = [blob(f"layer {i} {j} ".encode() * 16) for j in range(1, per_repo)]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d, "size": s} for d, s in layers],
    }).encode()
    mdigest, _ = blob(manifest)
    for d, _ in [config] + layers:
        link(os.path.join(repo, "_layers", "sha256", d[7:]), d)
    link(os.path.join(repo, "_manifests", "revisions", "sha256", mdigest[7:]), mdigest)
    tag = os.path.join(repo, "_manifests", "tags", "latest")
    link(os.path.join(tag, "current"), mdigest)
    link(os.path.join(tag, "index", "sha256", mdigest[7:]), mdigest)
PY
gen_done=$(date +%s.%N)
echo "generated $REPOS repositories, $((REPOS * PER_REPO)) blobs in $(python3 -c "print(f'{$gen_done - $gen_started:.1f}')")s" >&2

# --- time the import ----------------------------------------------------------------------
sync
started=$(date +%s.%N)
REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$ROOT" REGISTRY_LOG_LEVEL=warn \
    timeout "$TIMEOUT" "$FERRY" import --json >"$WORK/report.json" 2>"$WORK/import.log" || {
    echo "adoption.sh: ferry import failed or took more than ${TIMEOUT}s:" >&2
    cat "$WORK/import.log" >&2
    exit 1
}
done_at=$(date +%s.%N)

RESULT=$(python3 - "$WORK/report.json" "$started" "$done_at" "$REPOS" "$PER_REPO" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
seconds = float(sys.argv[3]) - float(sys.argv[2])
repos, per_repo = int(sys.argv[4]), int(sys.argv[5])
assert report["repositories"] == repos, report["repositories"]
assert report["blobs"] == repos * per_repo, report["blobs"]
assert report["manifests"] == repos and report["tags"] == repos, report
assert not report["skipped"] and not report["corrupt_blobs"], report
print(f"{seconds:.2f} {repos / seconds:.0f} {report['blobs'] / seconds:.0f} "
      f"{report['manifests']} {report['tags']} {report['blobs']}")
PY
)
read -r SECONDS_TAKEN REPOS_PER_S BLOBS_PER_S MANIFESTS TAGS LINKS <<<"$RESULT"
echo "ferry import: $REPOS repositories, $LINKS blob links, $MANIFESTS manifests, $TAGS tags in ${SECONDS_TAKEN}s"
echo "  $REPOS_PER_S repositories/s, $BLOBS_PER_S blobs/s"

# --- record it in bench/ADOPTION.md -------------------------------------------------------
DOC=bench/ADOPTION.md
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || true)
SECTION=$(cat <<EOF
<!-- adoption-result:begin (written by bench/adoption.sh) -->
| When | Repositories | Blobs | Manifests | Tags | Import time | Repositories/s | Blobs/s |
|---|---|---|---|---|---|---|---|
| $(date -u +%Y-%m-%dT%H:%MZ) | $REPOS | $LINKS | $MANIFESTS | $TAGS | ${SECONDS_TAKEN}s | $REPOS_PER_S | $BLOBS_PER_S |

Machine: $(nproc) CPUs (${CPU:-unknown}), $(df -T "$WORK" | awk 'NR==2 {print $2}') temp filesystem; \`ferry $("$FERRY" --version | awk '{print $2}')\` release build, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`.
<!-- adoption-result:end -->
EOF
)
if [ -f "$DOC" ] && grep -q 'adoption-result:begin' "$DOC"; then
    python3 - "$DOC" "$SECTION" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"<!-- adoption-result:begin.*?adoption-result:end -->", lambda _: section,
              text, flags=re.S)
open(path, "w").write(text)
PY
else
    blank=$([ -s "$DOC" ] && echo yes || true)
    {
        [ -n "$blank" ] && echo
        echo "## Adoption (\`ferry import\` of a registry:2 data directory)"
        echo
        echo "\`bench/adoption.sh\`: Distribution's layout written directly as files (1,000"
        echo "repositories × 20 small blobs of their own, one manifest and one tag each), then a"
        echo "release \`ferry import\` timed on it (no \`--verify\`: blobs are stat-ed, not re-hashed)."
        echo
        echo "$SECTION"
    } >>"$DOC"
fi
echo "recorded in $DOC" >&2
