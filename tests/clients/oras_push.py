"""Push one artifact with the oras Python SDK (PyPI `oras` 0.2.x), for tests/clients.rs.

Usage: oras_push.py HOST REPO:TAG FILE CONFIG_MEDIA_TYPE ARTIFACT_TYPE|- \
                    SUBJECT_MEDIA_TYPE SUBJECT_DIGEST SUBJECT_SIZE

Run with the working directory holding FILE (oras validates paths against it). Prints one
JSON object: the status, `Docker-Content-Digest`, `OCI-Subject` and `Location` of the
manifest PUT.
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


def main():
    host, target, path, config_type, artifact_type, s_type, s_digest, s_size = sys.argv[1:]
    # The `token` backend breaks on Basic challenges; the test registry has no auth at all.
    reg = Registry(hostname=host, insecure=True, auth_backend="basic")
    if artifact_type != "-":
        reg.artifact_type = artifact_type
    # A config file that does not exist makes oras upload the empty JSON object `{}`.
    config = os.path.join(os.getcwd(), "no-such-config") + ":" + config_type
    resp = reg.push(
        target=f"{host}/{target}",
        files=[path + ":application/vnd.ferry.test.file"],
        manifest_config=config,
        manifest_annotations={"org.opencontainers.image.description": "ferry test"},
        subject=oras.oci.Subject(mediaType=s_type, digest=s_digest, size=int(s_size)),
        quiet=True,
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


if __name__ == "__main__":
    main()
