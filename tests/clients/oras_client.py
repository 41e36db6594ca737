"""Push and pull artifacts with the oras Python SDK (PyPI `oras` 0.2.x), for tests/clients.rs.

    oras_client.py push HOST REPO:TAG FILE CONFIG_MEDIA_TYPE ARTIFACT_TYPE|- \
                        SUBJECT_MEDIA_TYPE SUBJECT_DIGEST SUBJECT_SIZE CHUNK_SIZE|-
    oras_client.py pull HOST REPO:TAG OUTDIR

SUBJECT_MEDIA_TYPE `-`: no subject. Environment: ORAS_TLS_CA (HTTPS, trusting that CA),
ORAS_USER and ORAS_PASSWORD (log in first).

`push` runs with the working directory holding FILE (oras validates paths against it);
CHUNK_SIZE uploads the file in PATCH chunks of that many bytes. It prints one JSON object:
the status, `Docker-Content-Digest`, `OCI-Subject` and `Location` of the manifest PUT.
`pull` downloads the artifact's files into OUTDIR and prints their paths as a JSON list.
"""

import json
import os
import sys

import oras.provider  # first: importing oras.decorator first is a circular import
import oras.decorator
import oras.oci

# oras retries every failed request five times with sleeps adding up to about two minutes;
# a failing test must fail at once. `retry(attempts=0)` makes exactly one attempt.
oras.provider.Registry.do_request = oras.decorator.retry(attempts=0, timeout=0)(
    oras.provider.Registry.do_request.__wrapped__
)


class Registry(oras.provider.Registry):
    """oras 0.2 has no artifactType option: add it to the manifest it uploads."""

    artifact_type = None

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest["artifactType"] = self.artifact_type
        return super().upload_manifest(manifest, container)


def registry(host):
    """Plain HTTP without credentials; with ORAS_TLS_CA, HTTPS trusting that CA file; with
    ORAS_USER and ORAS_PASSWORD as well, logged in (the token flow: Bearer challenges)."""
    ca = os.environ.get("ORAS_TLS_CA")
    if not ca:
        # The `token` backend breaks on Basic challenges; this registry has no auth at all.
        return Registry(hostname=host, insecure=True, auth_backend="basic")
    reg = Registry(hostname=host, insecure=False, tls_verify=ca, auth_backend="token")
    user = os.environ.get("ORAS_USER")
    if user:
        reg.login(username=user, password=os.environ["ORAS_PASSWORD"], tls_verify=ca, hostname=host)
    return reg


def push(host, target, path, config_type, artifact_type, s_type, s_digest, s_size, chunk):
    reg = registry(host)
    if artifact_type != "-":
        reg.artifact_type = artifact_type
    # A config file that does not exist makes oras upload the empty JSON object `{}`.
    config = os.path.join(os.getcwd(), "no-such-config") + ":" + config_type
    options = {"do_chunked": True, "chunk_size": int(chunk)} if chunk != "-" else {}
    resp = reg.push(
        target=f"{host}/{target}",
        files=[path + ":application/vnd.ferry.test.file"],
        manifest_config=config,
        manifest_annotations={"org.opencontainers.image.description": "ferry test"},
        subject=None
        if s_type == "-"
        else oras.oci.Subject(mediaType=s_type, digest=s_digest, size=int(s_size)),
        quiet=True,
        **options,
    )
    print(
        json.dumps(
            {
                "status": resp.status_code,
                "digest": resp.headers.get("Docker-Content-Digest"),
                "subject": resp.headers.get("OCI-Subject"),
                "location": resp.headers.get("Location"),
            }
        )
    )
    if resp.status_code != 201:
        sys.exit(f"manifest PUT answered {resp.status_code}: {resp.text}")


def pull(host, target, outdir):
    files = registry(host).pull(target=f"{host}/{target}", outdir=outdir)
    print(json.dumps(files))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    {"push": push, "pull": pull}[command](*args)


if __name__ == "__main__":
    main()
