//! Real clients against a real registry: docker, skopeo, podman, buildah, containerd's `ctr`,
//! the oras Python SDK, and a multi-arch index round trip.
//!
//! Every test starts its own registry (random loopback port, temporary data directory) and
//! drives a client the way a user would, then checks what the user would notice: digests
//! survive a round trip, tags and the catalog list what was pushed, deleted things are gone,
//! referrers list the artifacts attached to an image.
//!
//! One more test restarts the registry under a client (`kill -9`, then an empty data
//! directory on the same port).
//!
//! With `FERRY_TEST_STORAGE=s3` Ferry stores blobs on its own S3 server (see
//! `tests/support`); the test over Distribution's data directory then prints `SKIP`.
//!
//! The tests run against Ferry. `FERRY_TEST_FLAVOR=distribution` runs them against the
//! reference (Debian's `docker-registry`, Distribution 2.8) instead, to check the tests
//! themselves; Distribution has no referrers API, so that part of the oras test is skipped
//! there.
//!
//! The client tools are installed by `tests/run.sh`; a missing tool fails its test, except the
//! Docker engine: when `docker info` fails, the docker test prints `SKIP: ...` and passes.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::cli::*;
use support::*;

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn docker() {
    docker_push_pull(flavor());
}

#[test]
fn docker_missing() {
    docker_pull_missing(flavor());
}

#[test]
fn skopeo() {
    skopeo_copy_both_ways(flavor());
}

#[test]
fn skopeo_delete_disabled() {
    skopeo_delete_refused(flavor());
}

#[test]
fn podman() {
    podman_pull_tag_push(flavor());
}

#[test]
fn buildah() {
    buildah_build_push(flavor());
}

#[test]
fn containerd() {
    containerd_pull_push(flavor());
}

#[test]
fn oras() {
    oras_artifacts_and_referrers(flavor());
}

#[test]
fn multi_arch_index() {
    multi_arch_round_trip(flavor());
}

#[test]
fn migrate_from_distribution() {
    drop_in_over_distribution_data(flavor());
}

#[test]
fn restart() {
    restart_keeps_data(flavor());
}

/// docker: import a tiny image, push, remove it locally, pull it back; the image ID and the
/// digest survive, and the registry lists the repository and tags.
fn docker_push_pull(flavor: Flavor) {
    if !docker_available() {
        eprintln!("SKIP: docker engine not available");
        return;
    }
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let nonce = nonce();

    // A root file system from a few local files: `docker import` needs no network.
    let rootfs = tmp.path().join("rootfs");
    write(
        &rootfs.join("hello.txt"),
        &format!("hello from ferry {nonce}\n"),
    );
    write(&rootfs.join("etc/ferry-release"), "ferry test image\n");
    // A layer of several MiB, as real images have: it must stream through the upload.
    write(&rootfs.join("big.txt"), &noise(BIG, &nonce));
    let tarball = tmp.path().join("rootfs.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));

    let name = format!("{}/team/app:1", reg.host);
    let name2 = format!("{}/team/app:2", reg.host);
    let mut images = DockerImages(vec![name.clone()]);
    let image_id = sh(Command::new("docker")
        .arg("import")
        .arg(&tarball)
        .arg(&name))
    .trim()
    .to_string();
    assert!(
        image_id.starts_with("sha256:"),
        "docker import printed {image_id:?}"
    );

    let out = sh(Command::new("docker").args(["push", &name]));
    let pushed = docker_push_digest(&out);

    // The RepoDigest docker recorded is the digest the registry serves for the tag.
    let repo_digests = docker_inspect(&name, "{{json .RepoDigests}}");
    let want = format!("{}/team/app@{pushed}", reg.host);
    assert!(
        repo_digests.contains(&want),
        "RepoDigests {repo_digests} lack {want}"
    );
    let head = head_manifest(&reg, "team/app", "1", &pushed);
    assert_eq!(head.header("content-type"), Some(DOCKER_MANIFEST));
    let manifest = get_manifest(&reg, "team/app", &pushed);
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(image_id.as_str())
    );

    // A second tag of the same image: docker finds every blob already there.
    images.0.push(name2.clone());
    sh(Command::new("docker").args(["tag", &name, &name2]));
    let out = sh(Command::new("docker").args(["push", &name2]));
    assert_eq!(docker_push_digest(&out), pushed, "same image, same digest");
    assert!(
        out.contains("already exists"),
        "second push re-uploaded layers:\n{out}"
    );

    // Remove the image locally, pull it back.
    sh(Command::new("docker").args(["rmi", &name, &name2]));
    assert!(
        !Command::new("docker")
            .args(["image", "inspect", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success(),
        "{name} still present after docker rmi"
    );
    images.0.truncate(1);
    let out = sh(Command::new("docker").args(["pull", &name]));
    assert!(
        out.contains(&format!("Digest: {pushed}")),
        "docker pull output:\n{out}"
    );
    assert_eq!(
        docker_inspect(&name, "{{.Id}}"),
        image_id,
        "image ID after pull"
    );
    let repo_digests = docker_inspect(&name, "{{json .RepoDigests}}");
    assert!(
        repo_digests.contains(&want),
        "RepoDigests {repo_digests} lack {want}"
    );

    // Pull by digest works too.
    let by_digest = format!("{}/team/app@{pushed}", reg.host);
    images.0.push(by_digest.clone());
    sh(Command::new("docker").args(["pull", &by_digest]));
    assert_eq!(docker_inspect(&by_digest, "{{.Id}}"), image_id);

    // Into another repository: docker mounts the layer from team/app instead of uploading.
    let other = format!("{}/team/other:1", reg.host);
    images.0.push(other.clone());
    sh(Command::new("docker").args(["tag", &name, &other]));
    let out = sh(Command::new("docker").args(["push", &other]));
    assert!(
        out.contains("Mounted from team/app"),
        "docker push {other}:\n{out}"
    );
    assert_eq!(docker_push_digest(&out), pushed);
    assert_blobs_present(
        &reg,
        "team/other",
        &get_manifest(&reg, "team/other", &pushed),
    );

    let cat = catalog(&reg);
    for repo in ["team/app", "team/other"] {
        assert!(
            cat.contains(&repo.to_string()),
            "catalog {cat:?} lacks {repo}"
        );
    }
    assert_eq!(
        tags(&reg, "team/app"),
        Some(vec!["1".to_string(), "2".to_string()])
    );
}

/// docker: pulling what is not there says "not found", whether the tag or the whole
/// repository is missing. Distribution answers `MANIFEST_UNKNOWN` for both; docker words a
/// `NAME_UNKNOWN` as a bare "Error response from daemon: name unknown".
fn docker_pull_missing(flavor: Flavor) {
    if !docker_available() {
        eprintln!("SKIP: docker engine not available");
        return;
    }
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    write(&tmp.path().join("rootfs/hello.txt"), &nonce());
    let tarball = tmp.path().join("rootfs.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(tmp.path().join("rootfs"))
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    let name = format!("{}/team/app:1", reg.host);
    let _images = DockerImages(vec![name.clone()]);
    sh(Command::new("docker")
        .arg("import")
        .arg(&tarball)
        .arg(&name));
    sh(Command::new("docker").args(["push", &name]));

    for missing in ["team/app:nope", "team/nothere:1"] {
        let missing = format!("{}/{missing}", reg.host);
        let out = run_timed(Command::new("docker").args(["pull", &missing]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "docker pull {missing} succeeded");
        assert!(
            err.contains("not found") && err.contains("manifest unknown"),
            "docker pull {missing}: {err}"
        );
    }
}

/// skopeo: OCI layout -> registry -> OCI layout; the manifest and every layer keep their
/// digests; list-tags; registry-to-registry copies; delete makes the manifest disappear.
fn skopeo_copy_both_ways(flavor: Flavor) {
    require(&["skopeo", "umoci"]);
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let nonce = nonce();
    let mut files = three_files(&nonce);
    // A layer of several MiB, as real images have: it must stream through the upload.
    files.push(("/app/big.txt".into(), noise(BIG, &nonce)));
    let image = new_image(&layout, "v1", &files, tmp.path());

    let dest = format!("docker://{}/ns/img:v1", reg.host);
    sh(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(&dest));

    let inspect = skopeo_inspect(&dest);
    assert_eq!(
        inspect["Digest"].as_str(),
        Some(image.digest.as_str()),
        "{inspect}"
    );
    assert_eq!(string_list(&inspect["Layers"]), image.layers, "{inspect}");
    let raw = sh(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &dest]));
    assert_eq!(
        raw.as_bytes(),
        &image.manifest[..],
        "manifest bytes as pushed"
    );
    let head = head_manifest(&reg, "ns/img", "v1", &image.digest);
    assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        head.header("content-length"),
        Some(image.manifest.len().to_string().as_str())
    );

    // Back into a fresh OCI layout: same manifest bytes, same blobs.
    let back = tmp.path().join("back");
    sh(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &dest])
        .arg(format!("oci:{}:v1", back.display())));
    let copy = read_layout(&back, "v1");
    assert_eq!(copy.digest, image.digest);
    assert_eq!(copy.manifest, image.manifest);
    assert_eq!(copy.config, image.config);
    assert_eq!(copy.layers, image.layers);
    for blob in copy.layers.iter().chain([&copy.config]) {
        assert_eq!(
            &sha256(&read(&layout_blob(&back, blob))),
            blob,
            "blob in copied layout"
        );
    }

    // Registry to registry: another tag in the same repository, and another repository
    // (which a client may do with a cross-repository mount).
    for copy in ["ns/img:v2", "other/img:latest"] {
        sh(Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(&dest)
            .arg(format!("docker://{}/{copy}", reg.host)));
    }
    let listed = json(&sh(Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/ns/img", reg.host))));
    assert_eq!(string_list(&listed["Tags"]), ["v1", "v2"], "{listed}");
    let other = skopeo_inspect(&format!("docker://{}/other/img:latest", reg.host));
    assert_eq!(other["Digest"].as_str(), Some(image.digest.as_str()));
    let cat = catalog(&reg);
    for repo in ["ns/img", "other/img"] {
        assert!(
            cat.contains(&repo.to_string()),
            "catalog {cat:?} lacks {repo}"
        );
    }

    // skopeo delete deletes the manifest (by digest): every tag of it is gone in ns/img,
    // the copy in other/img stays.
    sh(Command::new("skopeo").args(["delete", "--tls-verify=false", &dest]));
    for reference in ["v1", "v2", image.digest.as_str()] {
        let url = format!("{}/v2/ns/img/manifests/{reference}", reg.url);
        let got = http("GET", &url, ACCEPT, None);
        assert_eq!(got.status, 404, "GET {url} after skopeo delete: {got:?}");
    }
    let left = tags(&reg, "ns/img").unwrap_or_default();
    assert!(
        !left.contains(&"v1".to_string()),
        "tags after delete: {left:?}"
    );
    let url = format!("{}/v2/other/img/manifests/latest", reg.url);
    assert_eq!(
        http("HEAD", &url, ACCEPT, None).status,
        200,
        "other/img lost its copy"
    );
}

/// With `storage.delete.enabled: false` (registry:2's default) `skopeo delete` fails with
/// 405 UNSUPPORTED and the image stays.
fn skopeo_delete_refused(flavor: Flavor) {
    require(&["skopeo", "umoci"]);
    let reg = TestRegistry::start_with(flavor, &[("REGISTRY_STORAGE_DELETE_ENABLED", "false")]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let image = new_image(&layout, "v1", &three_files(&nonce()), tmp.path());
    let dest = format!("{}/keep/img:v1", reg.host);
    skopeo_push(&layout, "v1", &dest);

    let out = run_timed(
        Command::new("skopeo")
            .args(["delete", "--tls-verify=false"])
            .arg(format!("docker://{dest}")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "skopeo delete succeeded with deletes disabled"
    );
    assert!(
        err.contains("UNSUPPORTED") && err.contains("405"),
        "skopeo delete: {err}"
    );
    let manifest = get_manifest(&reg, "keep/img", &image.digest);
    assert_blobs_present(&reg, "keep/img", &manifest);
    assert_eq!(tags(&reg, "keep/img"), Some(vec!["v1".to_string()]));
}

/// podman: pull what skopeo pushed, tag it into another repository, push it there.
fn podman_pull_tag_push(flavor: Flavor) {
    require(&["podman", "skopeo", "umoci"]);
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let image = new_image(&layout, "v1", &three_files(&nonce()), tmp.path());
    let src = format!("{}/ns/base:v1", reg.host);
    skopeo_push(&layout, "v1", &src);

    let podman = ToolStorage::new("podman", tmp.path().join("podman"));
    let out = sh(podman.cmd().args(["pull", "--tls-verify=false", &src]));
    let id = out.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(
        format!("sha256:{id}"),
        image.config,
        "podman's image ID is the config digest"
    );
    let digest = sh(podman
        .cmd()
        .args(["image", "inspect", "--format", "{{.Digest}}", &src]));
    assert_eq!(
        digest.trim(),
        image.digest,
        "podman recorded the pulled manifest digest"
    );

    let dst = format!("{}/team/copy:v2", reg.host);
    sh(podman.cmd().args(["tag", &src, &dst]));
    let digestfile = tmp.path().join("podman.digest");
    sh(podman
        .cmd()
        .args(["push", "--tls-verify=false", "--digestfile"])
        .arg(&digestfile)
        .arg(&dst));
    let pushed = read_digestfile(&digestfile);

    // podman may recompress the layers; the image (config) must be the same one.
    head_manifest(&reg, "team/copy", "v2", &pushed);
    let manifest = get_manifest(&reg, "team/copy", &pushed);
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(image.config.as_str())
    );
    assert_blobs_present(&reg, "team/copy", &manifest);
    assert_eq!(tags(&reg, "team/copy"), Some(vec!["v2".to_string()]));

    // A fresh podman pulls the pushed copy back to the same image.
    let fresh = ToolStorage::new("podman", tmp.path().join("podman2"));
    let out = sh(fresh.cmd().args(["pull", "--tls-verify=false", &dst]));
    let id = out.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(format!("sha256:{id}"), image.config);
}

/// buildah: build an image from scratch out of local files, push it in OCI and Docker
/// formats; it pulls back as the same image.
fn buildah_build_push(flavor: Flavor) {
    require(&["buildah", "skopeo", "podman"]);
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let nonce = nonce();
    let files = tmp.path().join("files");
    write(
        &files.join("app.txt"),
        &format!("built by buildah {nonce}\n"),
    );
    write(&files.join("etc/ferry-release"), "ferry buildah test\n");

    let buildah = ToolStorage::new("buildah", tmp.path().join("buildah"));
    let ctr = sh(buildah.cmd().args(["from", "scratch"]))
        .trim()
        .to_string();
    sh(buildah
        .cmd()
        .arg("copy")
        .arg(&ctr)
        .arg(files.join("app.txt"))
        .arg("/app.txt"));
    sh(buildah
        .cmd()
        .arg("copy")
        .arg(&ctr)
        .arg(files.join("etc"))
        .arg("/etc"));
    sh(buildah
        .cmd()
        .args(["config", "--label", "ferry=test", "--env", "FERRY=1", &ctr]));
    let iidfile = tmp.path().join("iid");
    sh(buildah
        .cmd()
        .arg("commit")
        .arg("--iidfile")
        .arg(&iidfile)
        .args([&ctr, "ferry-built"]));
    sh(buildah.cmd().args(["rm", &ctr]));
    let iid = std::fs::read_to_string(&iidfile)
        .unwrap()
        .trim()
        .to_string();
    let iid = if iid.starts_with("sha256:") {
        iid
    } else {
        format!("sha256:{iid}")
    };

    for (tag, format, media_type) in [
        ("oci", "oci", OCI_MANIFEST),
        ("docker", "v2s2", DOCKER_MANIFEST),
    ] {
        let dest = format!("docker://{}/built/img:{tag}", reg.host);
        let digestfile = tmp.path().join(format!("digest-{tag}"));
        sh(buildah
            .cmd()
            .args([
                "push",
                "--tls-verify=false",
                "--format",
                format,
                "--digestfile",
            ])
            .arg(&digestfile)
            .args(["ferry-built", &dest]));
        let pushed = read_digestfile(&digestfile);

        let inspect = skopeo_inspect(&dest);
        assert_eq!(
            inspect["Digest"].as_str(),
            Some(pushed.as_str()),
            "{inspect}"
        );
        assert_eq!(
            inspect["Labels"]["ferry"].as_str(),
            Some("test"),
            "{inspect}"
        );
        let head = head_manifest(&reg, "built/img", tag, &pushed);
        assert_eq!(head.header("content-type"), Some(media_type), "{head:?}");
        let manifest = get_manifest(&reg, "built/img", &pushed);
        assert_blobs_present(&reg, "built/img", &manifest);
        if format == "oci" {
            // The OCI push keeps buildah's config: the image ID is its digest.
            assert_eq!(manifest["config"]["digest"].as_str(), Some(iid.as_str()));
        }

        // It pulls back (into a fresh podman) as an image with buildah's label.
        let podman = ToolStorage::new("podman", tmp.path().join(format!("podman-{tag}")));
        let src = format!("{}/built/img:{tag}", reg.host);
        sh(podman.cmd().args(["pull", "--tls-verify=false", &src]));
        let label =
            sh(podman
                .cmd()
                .args(["image", "inspect", "--format", "{{.Labels.ferry}}", &src]));
        assert_eq!(label.trim(), "test");
    }
    assert_eq!(
        tags(&reg, "built/img"),
        Some(vec!["docker".to_string(), "oci".to_string()])
    );
}

/// containerd: a private containerd pulls (and unpacks) an image, then pushes a re-tag of it
/// into another repository.
fn containerd_pull_push(flavor: Flavor) {
    require(&["containerd", "ctr", "skopeo", "umoci"]);
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let nonce = nonce();
    let files = three_files(&nonce);
    let image = new_image(&layout, "v1", &files, tmp.path());
    let src = format!("{}/ns/img:v1", reg.host);
    skopeo_push(&layout, "v1", &src);

    let daemon = Containerd::start(&tmp.path().join("containerd"));
    let ctr = || {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&daemon.socket);
        cmd
    };
    sh(ctr().args([
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        &src,
    ]));
    let listed = sh(ctr().args(["images", "ls"]));
    let line = listed
        .lines()
        .find(|l| l.starts_with(&format!("{src} ")))
        .unwrap_or_default();
    assert!(line.contains(&image.digest), "ctr images ls:\n{listed}");

    // The pull unpacked the layers: some snapshot holds every file with its content.
    daemon.assert_unpacked(&files);

    // From a two-platform index, containerd picks the child of the platform asked for.
    let (_, index_bytes) = two_platform_index(&layout, "multi", &nonce, tmp.path());
    let multi = format!("{}/ns/multi:1", reg.host);
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{multi}")));
    let out = sh(ctr()
        .args(["images", "pull", "--plain-http", "--snapshotter", "native"])
        .args(["--platform", "linux/arm64", &multi]));
    assert!(out.contains("unpacking linux/arm64"), "ctr pull:\n{out}");
    let listed = sh(ctr().args(["images", "ls"]));
    let line = listed
        .lines()
        .find(|l| l.starts_with(&format!("{multi} ")))
        .unwrap_or_default();
    assert!(
        line.contains(&sha256(&index_bytes)),
        "ctr images ls:\n{listed}"
    );
    daemon.assert_unpacked(&[("/arch.txt".into(), format!("arm64 {nonce}\n"))]);

    let dst = format!("{}/ctr/pushed:p1", reg.host);
    sh(ctr().args(["images", "tag", &src, &dst]));
    sh(ctr().args(["images", "push", "--plain-http", &dst]));
    head_manifest(&reg, "ctr/pushed", "p1", &image.digest);
    let manifest = get_manifest(&reg, "ctr/pushed", &image.digest);
    assert_blobs_present(&reg, "ctr/pushed", &manifest);
    assert_eq!(tags(&reg, "ctr/pushed"), Some(vec!["p1".to_string()]));
    drop(daemon);
}

/// oras (Python SDK): push two artifacts whose subject is an image; the referrers API lists
/// them, and filters by artifactType.
fn oras_artifacts_and_referrers(flavor: Flavor) {
    require(&["skopeo", "umoci"]);
    require_oras();
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let image = new_image(&layout, "v1", &three_files(&nonce()), tmp.path());
    skopeo_push(&layout, "v1", &format!("{}/ns/app:v1", reg.host));

    let work = tmp.path().join("oras");
    let nonce = nonce();
    let sbom_text = format!("{{\"sbom\": \"{nonce}\"}}\n");
    // The signature is big enough to go up in three PATCH chunks of 1 MiB.
    let sig_text = format!("signed, ferry\n{}", noise(5 << 19, &nonce));
    write(&work.join("sbom.json"), &sbom_text);
    write(&work.join("sig.txt"), &sig_text);
    let push = |tag: &str, file: &str, config_type: &str, artifact_type: &str, chunk: &str| {
        let out = sh(oras_client()
            .arg("push")
            .arg(&reg.host)
            .arg(format!("ns/app:{tag}"))
            .args([
                file,
                config_type,
                artifact_type,
                OCI_MANIFEST,
                &image.digest,
            ])
            .arg(image.manifest.len().to_string())
            .arg(chunk)
            .current_dir(&work));
        json(out.lines().last().unwrap_or_default())
    };
    // An artifact with an explicit artifactType and the empty config...
    let sbom = push("sbom", "sbom.json", OCI_EMPTY, SBOM_TYPE, "-");
    // ... and one without: its artifactType is its config's media type.
    let sig = push("sig", "sig.txt", SIG_CONFIG_TYPE, "-", "1048576");
    let mut pushed = Vec::new();
    for (name, res) in [("sbom", &sbom), ("sig", &sig)] {
        assert_eq!(res["status"], 201, "{name}: {res}");
        let digest = res["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no digest: {res}"));
        if flavor == Flavor::Ferry {
            // A registry that knows `subject` says so with OCI-Subject (spec v1.1).
            assert_eq!(
                res["subject"].as_str(),
                Some(image.digest.as_str()),
                "{name}: {res}"
            );
        }
        let got = http(
            "GET",
            &format!("{}/v2/ns/app/manifests/{digest}", reg.url),
            ACCEPT,
            None,
        );
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(sha256(&got.body), digest);
        pushed.push((digest.to_string(), got.body.len(), got.json()));
    }
    let (sbom_digest, sbom_size, sbom_manifest) = &pushed[0];
    let (sig_digest, sig_size, _) = &pushed[1];
    assert_eq!(
        sbom_manifest["subject"]["digest"].as_str(),
        Some(image.digest.as_str())
    );
    // oras pulls each artifact's file back.
    for (tag, file, text) in [
        ("sbom", "sbom.json", &sbom_text),
        ("sig", "sig.txt", &sig_text),
    ] {
        let out = tmp.path().join(format!("pulled-{tag}"));
        let files = json(&sh(oras_client()
            .args(["pull", &reg.host, &format!("ns/app:{tag}")])
            .arg(&out)));
        assert_eq!(string_list(&files), [out.join(file).display().to_string()]);
        assert!(
            read(&out.join(file)) == text.as_bytes(),
            "{tag}: pulled file differs"
        );
    }

    if flavor == Flavor::Distribution {
        eprintln!("NOTE: Distribution 2.8 has no referrers API; referrers checks skipped");
        return;
    }

    let url = format!("{}/v2/ns/app/referrers/{}", reg.url, image.digest);
    let all = http("GET", &url, &[], None);
    assert_eq!(all.status, 200, "GET {url}: {all:?}");
    assert_eq!(all.header("content-type"), Some(OCI_INDEX), "{all:?}");
    let index = all.json();
    assert_eq!(index["schemaVersion"], 2, "{index}");
    assert_eq!(index["mediaType"].as_str(), Some(OCI_INDEX), "{index}");
    let mut listed: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
    listed.sort_by_key(|d| d["artifactType"].as_str().unwrap_or_default().to_string());
    let want = [
        (sbom_digest, *sbom_size, SBOM_TYPE),
        (sig_digest, *sig_size, SIG_CONFIG_TYPE),
    ];
    assert_eq!(listed.len(), 2, "referrers of the image: {index}");
    for (d, (digest, size, artifact_type)) in listed.iter().zip(want) {
        assert_eq!(d["digest"].as_str(), Some(digest.as_str()), "{index}");
        assert_eq!(d["size"].as_u64(), Some(size as u64), "{index}");
        assert_eq!(d["mediaType"].as_str(), Some(OCI_MANIFEST), "{index}");
        assert_eq!(d["artifactType"].as_str(), Some(artifact_type), "{index}");
        // Annotations of the referring manifest are copied into its descriptor.
        assert_eq!(
            d["annotations"]["org.opencontainers.image.description"].as_str(),
            Some("ferry test"),
            "{index}"
        );
    }

    let filtered = http("GET", &format!("{url}?artifactType={SBOM_TYPE}"), &[], None);
    assert_eq!(filtered.status, 200, "{filtered:?}");
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    let only = filtered.json();
    let only = only["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(only.len(), 1, "filtered referrers: {only:?}");
    assert_eq!(only[0]["digest"].as_str(), Some(sbom_digest.as_str()));

    // Nothing refers to the sbom: an empty index, not an error.
    let none = http(
        "GET",
        &format!("{}/v2/ns/app/referrers/{sbom_digest}", reg.url),
        &[],
        None,
    );
    assert_eq!(none.status, 200, "{none:?}");
    assert_eq!(none.json()["manifests"], json!([]), "{none:?}");
}

/// A two-platform OCI index: pushed with `skopeo copy --all`, read back, each child resolves
/// by digest, platform selection picks the right child, and `--all` copies it back unchanged.
/// The same images as a Docker manifest list pushed by `buildah manifest push --all`; the
/// Docker engine (when there is one) pulls both.
fn multi_arch_round_trip(flavor: Flavor) {
    require(&["skopeo", "umoci"]);
    let reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let (children, index_bytes) = two_platform_index(&layout, "multi", &nonce(), tmp.path());
    let index_digest = sha256(&index_bytes);

    let dest = format!("docker://{}/ns/multi:1", reg.host);
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(&dest));

    let got = http(
        "GET",
        &format!("{}/v2/ns/multi/manifests/1", reg.url),
        &[("Accept", OCI_INDEX)],
        None,
    );
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.header("content-type"), Some(OCI_INDEX));
    assert_eq!(
        got.header("docker-content-digest"),
        Some(index_digest.as_str())
    );
    assert_eq!(got.body, index_bytes, "the index comes back byte for byte");
    for (arch, image) in &children {
        let url = format!("{}/v2/ns/multi/manifests/{}", reg.url, image.digest);
        let child = http("GET", &url, ACCEPT, None);
        assert_eq!(child.status, 200, "{arch} child {url}: {child:?}");
        assert_eq!(child.body, image.manifest, "{arch} child bytes");
        assert_eq!(child.header("content-type"), Some(OCI_MANIFEST));
        assert_blobs_present(&reg, "ns/multi", &child.json());

        // A client on that platform resolves the index to that child (skopeo reports the
        // digest of the index it was given, and the child's platform and layers).
        let inspect = json(&sh(Command::new("skopeo")
            .args(["--override-arch", arch, "--override-os", "linux"])
            .args(["inspect", "--tls-verify=false", &dest])));
        assert_eq!(
            inspect["Digest"].as_str(),
            Some(index_digest.as_str()),
            "{inspect}"
        );
        assert_eq!(inspect["Architecture"].as_str(), Some(*arch), "{inspect}");
        assert_eq!(
            string_list(&inspect["Layers"]),
            image.layers,
            "{arch}: {inspect}"
        );
    }
    let raw = sh(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &dest]));
    assert_eq!(raw.as_bytes(), &index_bytes[..]);

    let back = tmp.path().join("back");
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false", &dest])
        .arg(format!("oci:{}:1", back.display())));
    let back_index: Value = serde_json::from_slice(&read(&back.join("index.json"))).unwrap();
    let entry = &back_index["manifests"][0];
    assert_eq!(
        entry["digest"].as_str(),
        Some(index_digest.as_str()),
        "{back_index}"
    );
    assert_eq!(read(&layout_blob(&back, &index_digest)), index_bytes);
    for (_, image) in &children {
        assert_eq!(read(&layout_blob(&back, &image.digest)), image.manifest);
        for blob in image.layers.iter().chain([&image.config]) {
            assert_eq!(&sha256(&read(&layout_blob(&back, blob))), blob);
        }
    }

    // The same two images as a Docker manifest list: buildah converts them to Docker v2s2
    // manifests on the way (the configs stay the same) and pushes the children first.
    require(&["buildah"]);
    let buildah = ToolStorage::new("buildah", tmp.path().join("buildah"));
    sh(buildah.cmd().args(["manifest", "create", "ferry-list"]));
    for (arch, _) in &children {
        sh(buildah
            .cmd()
            .args(["manifest", "add", "ferry-list"])
            .arg(format!("oci:{}:{arch}", layout.display())));
    }
    let list_dest = format!("docker://{}/ns/multi:docker", reg.host);
    let digestfile = tmp.path().join("list.digest");
    sh(buildah
        .cmd()
        .args([
            "manifest",
            "push",
            "--all",
            "--format",
            "v2s2",
            "--tls-verify=false",
        ])
        .arg("--digestfile")
        .arg(&digestfile)
        .args(["ferry-list", &list_dest]));
    let list_digest = std::fs::read_to_string(&digestfile)
        .unwrap()
        .trim()
        .to_string();
    let list = get_manifest(&reg, "ns/multi", &list_digest);
    let head = head_manifest(&reg, "ns/multi", "docker", &list_digest);
    assert_eq!(head.header("content-type"), Some(DOCKER_LIST), "{head:?}");
    let entries = list["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{list}");
    for ((arch, image), entry) in children.iter().zip(&entries) {
        assert_eq!(
            entry["platform"]["architecture"].as_str(),
            Some(*arch),
            "{list}"
        );
        assert_eq!(entry["mediaType"].as_str(), Some(DOCKER_MANIFEST), "{list}");
        let digest = entry["digest"].as_str().unwrap();
        let child = get_manifest(&reg, "ns/multi", digest);
        assert_eq!(
            child["mediaType"].as_str(),
            Some(DOCKER_MANIFEST),
            "{child}"
        );
        assert_eq!(
            child["config"]["digest"].as_str(),
            Some(image.config.as_str())
        );
        assert_blobs_present(&reg, "ns/multi", &child);
    }
    assert_eq!(
        tags(&reg, "ns/multi"),
        Some(vec!["1".to_string(), "docker".to_string()])
    );

    // The Docker engine pulls both (when there is one): each resolves to the child of the
    // engine's platform, whose image ID is that child's config digest.
    if !docker_available() {
        eprintln!("SKIP: docker engine not available (docker pull of the multi-arch images)");
        return;
    }
    let arch = sh(Command::new("docker").args(["version", "--format", "{{.Server.Arch}}"]));
    let Some((_, native)) = children.iter().find(|(a, _)| *a == arch.trim()) else {
        eprintln!("SKIP: docker engine is {arch}, neither amd64 nor arm64");
        return;
    };
    let names: Vec<String> = ["1", "docker"]
        .iter()
        .map(|tag| format!("{}/ns/multi:{tag}", reg.host))
        .collect();
    let _images = DockerImages(names.clone());
    for (name, digest) in names.iter().zip([&index_digest, &list_digest]) {
        let out = sh(Command::new("docker").args(["pull", name]));
        assert!(
            out.contains(&format!("Digest: {digest}")),
            "docker pull {name}:\n{out}"
        );
        assert_eq!(docker_inspect(name, "{{.Id}}"), native.config, "{name}");
        assert_eq!(
            docker_inspect(name, "{{.Architecture}}"),
            arch.trim(),
            "{name}"
        );
    }
}

/// The drop-in promise: clients fill a Distribution (registry:2) data directory, the registry
/// under test starts on that directory in its place, and clients find everything as it was,
/// an artifact's `subject` included, and can push on top.
fn drop_in_over_distribution_data(flavor: Flavor) {
    if support::skip_on_s3(
        "Distribution's data is a filesystem directory; the filesystem pass covers adopting it",
    ) {
        return;
    }
    require(&["skopeo", "umoci", "podman", "python3"]);
    let mut before = TestRegistry::start_with(Flavor::Distribution, &[]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let nonce = nonce();
    let image = new_image(&layout, "v1", &three_files(&nonce), tmp.path());
    let (children, index_bytes) = two_platform_index(&layout, "multi", &nonce, tmp.path());
    let index_digest = sha256(&index_bytes);

    skopeo_push(&layout, "v1", &format!("{}/mig/oci:v1", before.host));
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{}/mig/multi:1", before.host)));
    let digestfile = tmp.path().join("docker.digest");
    sh(Command::new("skopeo")
        .args([
            "copy",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
            "--digestfile",
        ])
        .arg(&digestfile)
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/mig/docker:v1", before.host)));
    let docker_digest = std::fs::read_to_string(&digestfile)
        .unwrap()
        .trim()
        .to_string();
    write(
        &tmp.path().join("oras/sbom.json"),
        &format!("{{\"sbom\": \"{nonce}\"}}\n"),
    );
    let sbom = json(
        sh(oras_client()
            .args(["push", &before.host, "mig/oci:sbom", "sbom.json", OCI_EMPTY])
            .args([SBOM_TYPE, OCI_MANIFEST, &image.digest])
            .arg(image.manifest.len().to_string())
            .arg("-")
            .current_dir(tmp.path().join("oras")))
        .lines()
        .last()
        .unwrap_or_default(),
    );
    let sbom_digest = sbom["digest"].as_str().expect("sbom digest").to_string();
    before.terminate();

    let root = before.root.display().to_string();
    let reg = TestRegistry::start_with(
        flavor,
        &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root)],
    );
    let cat = catalog(&reg);
    for repo in ["mig/docker", "mig/multi", "mig/oci"] {
        assert!(
            cat.contains(&repo.to_string()),
            "catalog {cat:?} lacks {repo}; server log:\n{}",
            reg.log()
        );
    }
    assert_eq!(
        tags(&reg, "mig/oci"),
        Some(vec!["sbom".to_string(), "v1".to_string()])
    );
    for (repo, tag, digest, media_type) in [
        ("mig/oci", "v1", &image.digest, OCI_MANIFEST),
        ("mig/oci", "sbom", &sbom_digest, OCI_MANIFEST),
        ("mig/docker", "v1", &docker_digest, DOCKER_MANIFEST),
        ("mig/multi", "1", &index_digest, OCI_INDEX),
    ] {
        let head = head_manifest(&reg, repo, tag, digest);
        assert_eq!(head.header("content-type"), Some(media_type), "{head:?}");
        let manifest = get_manifest(&reg, repo, digest);
        if media_type != OCI_INDEX {
            assert_blobs_present(&reg, repo, &manifest);
        }
    }
    for (_, child) in &children {
        let manifest = get_manifest(&reg, "mig/multi", &child.digest);
        assert_blobs_present(&reg, "mig/multi", &manifest);
    }

    // Clients pull what registry:2 held.
    let back = tmp.path().join("back");
    sh(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/mig/oci:v1", reg.host))
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(read_layout(&back, "v1").manifest, image.manifest);
    let podman = ToolStorage::new("podman", tmp.path().join("podman"));
    let src = format!("{}/mig/docker:v1", reg.host);
    let out = sh(podman.cmd().args(["pull", "--tls-verify=false", &src]));
    let id = out.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(format!("sha256:{id}"), image.config);

    // And push on top: a new tag into an imported repository, another repository from it.
    sh(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}/mig/oci:v1", reg.host))
        .arg(format!("docker://{}/mig/oci:v2", reg.host)));
    sh(podman
        .cmd()
        .args(["tag", &src, &format!("{}/mig/new:1", reg.host)]));
    sh(podman
        .cmd()
        .args(["push", "--tls-verify=false"])
        .arg(format!("{}/mig/new:1", reg.host)));
    assert_eq!(
        tags(&reg, "mig/oci"),
        Some(vec!["sbom".to_string(), "v1".to_string(), "v2".to_string()])
    );
    assert_eq!(tags(&reg, "mig/new"), Some(vec!["1".to_string()]));

    if flavor == Flavor::Ferry {
        // registry:2 stored the artifact without knowing `subject`; Ferry lists it anyway.
        let url = format!("{}/v2/mig/oci/referrers/{}", reg.url, image.digest);
        let got = http("GET", &url, &[], None);
        assert_eq!(got.status, 200, "GET {url}: {got:?}");
        let listed = got.json();
        let digests: Vec<&str> = listed["manifests"]
            .as_array()
            .map(|m| m.iter().filter_map(|d| d["digest"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(digests, [sbom_digest.as_str()], "{listed}");
        assert_eq!(
            listed["manifests"][0]["artifactType"].as_str(),
            Some(SBOM_TYPE)
        );
    }
}

/// skopeo around registry restarts: a `kill -9` loses nothing that was pushed; a registry
/// that comes back empty on the same port (which skopeo's blob-info cache still remembers
/// as having the blobs) takes the same image again.
fn restart_keeps_data(flavor: Flavor) {
    require(&["skopeo", "umoci"]);
    let mut reg = TestRegistry::start_with(flavor, &[]);
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let image = new_image(&layout, "v1", &three_files(&nonce()), tmp.path());
    skopeo_push(&layout, "v1", &format!("{}/keep/img:v1", reg.host));

    reg.restart();
    let dest = format!("docker://{}/keep/img:v1", reg.host);
    let inspect = skopeo_inspect(&dest);
    assert_eq!(
        inspect["Digest"].as_str(),
        Some(image.digest.as_str()),
        "{inspect}"
    );
    let back = tmp.path().join("back");
    sh(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &dest])
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(read_layout(&back, "v1").manifest, image.manifest);
    assert_eq!(tags(&reg, "keep/img"), Some(vec!["v1".to_string()]));

    // Same port, empty storage.
    reg.kill9();
    reg.wipe_storage();
    reg.restart();
    let url = format!("{}/v2/keep/img/manifests/v1", reg.url);
    assert_eq!(
        http("HEAD", &url, ACCEPT, None).status,
        404,
        "data survived a wipe?"
    );
    for repo in ["keep/img", "keep/again"] {
        skopeo_push(&layout, "v1", &format!("{}/{repo}:v1", reg.host));
        let manifest = get_manifest(&reg, repo, &image.digest);
        assert_blobs_present(&reg, repo, &manifest);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The `Accept` header of a modern client's manifest pull.
const ACCEPT: &[(&str, &str)] = &[("Accept", ACCEPT_MANIFESTS)];

/// Size of the big file in the docker and skopeo images (about 6 MiB gzipped).
const BIG: usize = 12 << 20;

/// GET a manifest by digest; check its bytes hash to the digest; return it parsed.
fn get_manifest(reg: &TestRegistry, repo: &str, digest: &str) -> Value {
    let url = format!("{}/v2/{repo}/manifests/{digest}", reg.url);
    let got = http("GET", &url, ACCEPT, None);
    assert_eq!(got.status, 200, "GET {url}: {got:?}");
    assert_eq!(sha256(&got.body), digest, "GET {url} bytes");
    got.json()
}

/// `HEAD` of `repo:reference` as a modern client sends it: asserts 200 and the digest
/// header; returns the response for more checks.
fn head_manifest(reg: &TestRegistry, repo: &str, reference: &str, digest: &str) -> Resp {
    let url = format!("{}/v2/{repo}/manifests/{reference}", reg.url);
    let head = http("HEAD", &url, ACCEPT, None);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("docker-content-digest"),
        Some(digest),
        "{head:?}"
    );
    head
}

/// Every blob an image manifest references is in `repo` with the size the manifest says.
fn assert_blobs_present(reg: &TestRegistry, repo: &str, manifest: &Value) {
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for desc in layers.iter().chain([&manifest["config"]]) {
        let digest = desc["digest"].as_str().expect("descriptor digest");
        let url = format!("{}/v2/{repo}/blobs/{digest}", reg.url);
        let got = http("GET", &url, &[], None);
        assert_eq!(got.status, 200, "GET {url}: {got:?}");
        assert_eq!(
            Some(got.body.len() as u64),
            desc["size"].as_u64(),
            "{url} size"
        );
        assert_eq!(sha256(&got.body), digest, "{url} content");
    }
}

/// The repositories `_catalog` lists.
fn catalog(reg: &TestRegistry) -> Vec<String> {
    let got = http("GET", &format!("{}/v2/_catalog", reg.url), &[], None);
    assert_eq!(got.status, 200, "GET /v2/_catalog: {got:?}");
    string_list(&got.json()["repositories"])
}

/// The tags `tags/list` lists, sorted; `None` when the repository is unknown (404).
fn tags(reg: &TestRegistry, repo: &str) -> Option<Vec<String>> {
    let got = http(
        "GET",
        &format!("{}/v2/{repo}/tags/list", reg.url),
        &[],
        None,
    );
    if got.status == 404 {
        return None;
    }
    assert_eq!(got.status, 200, "GET /v2/{repo}/tags/list: {got:?}");
    let body = got.json();
    assert_eq!(body["name"].as_str(), Some(repo), "{body}");
    let mut tags = string_list(&body["tags"]);
    tags.sort();
    Some(tags)
}

/// In the OCI layout `layout`, an image per platform (linux/amd64 tagged `amd64`, linux/arm64
/// tagged `arm64`, each one layer with `/arch.txt` = "ARCH NONCE\n") and an OCI index of both
/// tagged `tag`. Returns the children and the index bytes.
fn two_platform_index(
    layout: &Path,
    tag: &str,
    nonce: &str,
    scratch: &Path,
) -> (Vec<(&'static str, LayoutImage)>, Vec<u8>) {
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let files = [("/arch.txt".to_string(), format!("{arch} {nonce}\n"))];
        let child = platform_image(layout, arch, None, &files, scratch, TOOL_TIMEOUT);
        children.push((arch, child));
    }
    let index = platform_index(&children);
    let index_bytes = serde_json::to_vec(&index).unwrap();
    add_to_layout(layout, tag, OCI_INDEX, &index_bytes);
    (children, index_bytes)
}
