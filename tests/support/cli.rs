//! Helpers for the tests that drive real command-line tools (`clients.rs`, `adopt.rs`):
//! tool checks, bounded commands, unique content, and OCI layouts built with umoci. (HTTP
//! requests: [`super::http`].)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::oci::{OCI_INDEX, OCI_MANIFEST, sha256};

/// Panic unless every tool is on PATH: the test command installs them.
pub fn require(tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in tools {
        if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
            panic!("tool `{tool}` is not installed: run tests/run.sh, which installs it");
        }
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Something unique to this test run, so images differ between runs and tests.
pub fn nonce() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{}-{n}", std::process::id(), t.as_nanos())
}

/// `len` characters of hex noise (half as compressible as text), different for each seed.
pub fn noise(len: usize, seed: &str) -> String {
    let mut out = String::with_capacity(len + 64);
    let mut block = Sha256::digest(seed.as_bytes());
    while out.len() < len {
        out.push_str(&hex::encode(block));
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

/// Write `content` to `path`, creating its parent directories.
pub fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Run a command with no stdin, kill it (by its PID) after `timeout`; return its output.
pub fn run_within(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Run a command (bounded by `timeout`), panic with its output if it fails, return its stdout.
pub fn sh_within(cmd: &mut Command, timeout: Duration) -> String {
    let out = run_within(cmd, timeout);
    super::stdout_of_success(cmd, out)
}

// ---------------------------------------------------------------------------------------
// OCI layouts built with umoci
// ---------------------------------------------------------------------------------------

/// An image in an OCI layout: its manifest (bytes and digest), config and layer digests.
pub struct LayoutImage {
    pub digest: String,
    pub manifest: Vec<u8>,
    pub config: String,
    pub layers: Vec<String>,
}

/// Where the blob `digest` lives in the OCI layout `layout`.
pub fn layout_blob(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest");
    layout.join("blobs").join(alg).join(hex)
}

/// The image tagged `tag` in the OCI layout at `layout`.
pub fn read_layout(layout: &Path, tag: &str) -> LayoutImage {
    let index: Value = serde_json::from_slice(&read(&layout.join("index.json"))).unwrap();
    let desc = index["manifests"]
        .as_array()
        .and_then(|m| {
            m.iter().find(|d| {
                d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
            })
        })
        .unwrap_or_else(|| panic!("no {tag} in {}: {index}", layout.display()))
        .clone();
    let digest = desc["digest"].as_str().unwrap().to_string();
    let manifest = read(&layout_blob(layout, &digest));
    assert_eq!(
        sha256(&manifest),
        digest,
        "manifest blob in {}",
        layout.display()
    );
    let parsed: Value = serde_json::from_slice(&manifest).unwrap();
    LayoutImage {
        digest,
        config: parsed["config"]["digest"].as_str().unwrap().to_string(),
        layers: parsed["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect(),
        manifest,
    }
}

/// Build image `tag` in the OCI layout `layout` (created if missing) with umoci: a copy of
/// the image tagged `from` (or a new empty image), plus one layer per file, each `(path in
/// the image, content)`. The files are staged in `scratch`; every umoci run is bounded by
/// `timeout`. A new image must come out with exactly one layer per file.
pub fn umoci_image(
    layout: &Path,
    tag: &str,
    from: Option<&str>,
    files: &[(String, String)],
    scratch: &Path,
    timeout: Duration,
) -> LayoutImage {
    let umoci = |cmd: &mut Command| sh_within(cmd, timeout);
    if !layout.join("index.json").exists() {
        umoci(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    let image = format!("{}:{tag}", layout.display());
    match from {
        Some(from) => umoci(
            Command::new("umoci")
                .args(["tag", "--image"])
                .arg(format!("{}:{from}", layout.display()))
                .arg(tag),
        ),
        None => umoci(Command::new("umoci").args(["new", "--image", &image])),
    };
    for (i, (path, content)) in files.iter().enumerate() {
        let file = scratch.join(format!("umoci-{tag}-{i}"));
        write(&file, content);
        umoci(
            Command::new("umoci")
                .args(["insert", "--image", &image])
                .arg(&file)
                .arg(path),
        );
    }
    let img = read_layout(layout, tag);
    if from.is_none() {
        assert_eq!(
            img.layers.len(),
            files.len(),
            "umoci made one layer per file"
        );
    }
    img
}

/// [`umoci_image`] `arch`, configured as an image for linux on `arch`.
pub fn platform_image(
    layout: &Path,
    arch: &str,
    from: Option<&str>,
    files: &[(String, String)],
    scratch: &Path,
    timeout: Duration,
) -> LayoutImage {
    umoci_image(layout, arch, from, files, scratch, timeout);
    sh_within(
        Command::new("umoci")
            .args(["config", "--architecture", arch, "--os", "linux", "--image"])
            .arg(format!("{}:{arch}", layout.display())),
        timeout,
    );
    read_layout(layout, arch)
}

/// An OCI index (as JSON) of `children`, each an image for linux on its architecture.
pub fn platform_index(children: &[(&str, LayoutImage)]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(arch, image)| json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.digest,
            "size": image.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    })
}

/// Add a blob to an OCI layout and tag it in `index.json`; return its digest.
pub fn add_to_layout(layout: &Path, tag: &str, media_type: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    std::fs::write(layout_blob(layout, &digest), bytes).unwrap();
    let path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&read(&path)).unwrap();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": media_type,
        "digest": digest,
        "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    digest
}

/// Whether a Docker engine answers (`docker info` succeeds).
pub fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Docker image names a test created; removed (by those exact names) when dropped.
pub struct DockerImages(pub Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// podman or buildah on private vfs storage in a temp dir (`--root`, `--runroot`).
pub struct ToolStorage {
    tool: &'static str,
    dir: PathBuf,
}

impl ToolStorage {
    pub fn new(tool: &'static str, dir: PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::create_dir_all(dir.join("runroot")).unwrap();
        ToolStorage { tool, dir }
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(self.tool);
        cmd.args(["--storage-driver", "vfs", "--root"])
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"));
        cmd
    }
}

/// A private containerd (CRI disabled) in a temp dir; killed (by PID) when dropped.
pub struct Containerd {
    child: Child,
    /// Its gRPC socket (`ctr --address`).
    pub socket: PathBuf,
    root: PathBuf,
}

impl Containerd {
    /// Starts one on `dir`; returns once `ctr` reaches it.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let root = dir.join("root");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        write(
            &config,
            &format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {socket:?}\n\
                 [ttrpc]\n  address = {ttrpc:?}\n\
                 [debug]\n  address = {debug:?}\n\
                 [metrics]\n  address = \"\"\n",
                root = root.display().to_string(),
                state = dir.join("state").display().to_string(),
                socket = socket.display().to_string(),
                ttrpc = dir.join("ttrpc.sock").display().to_string(),
                debug = dir.join("debug.sock").display().to_string(),
            ),
        );
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let mut me = Containerd {
            child,
            socket,
            root,
        };
        // Ready when `ctr version` reaches the daemon through the socket.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("containerd exited ({status}):\n{}", me.log(dir));
            }
            if me.socket.exists()
                && Command::new("ctr")
                    .arg("--address")
                    .arg(&me.socket)
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                return me;
            }
            if Instant::now() > deadline {
                let log = me.log(dir);
                drop(me);
                panic!("containerd not ready within 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Some snapshot of the native snapshotter holds every file, `(path, content)`.
    pub fn assert_unpacked(&self, files: &[(String, String)]) {
        let snapshots = self
            .root
            .join("io.containerd.snapshotter.v1.native/snapshots");
        let unpacked = std::fs::read_dir(&snapshots)
            .unwrap_or_else(|e| panic!("{}: {e}", snapshots.display()))
            .map(|e| e.unwrap().path())
            .any(|dir| {
                files.iter().all(|(path, content)| {
                    std::fs::read_to_string(dir.join(path.trim_start_matches('/')))
                        .ok()
                        .as_deref()
                        == Some(content.as_str())
                })
            });
        assert!(
            unpacked,
            "no snapshot under {} holds {files:?}",
            snapshots.display()
        );
    }

    /// A `ctr` command talking to this daemon.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket);
        cmd
    }

    fn log(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The real clients' commands (tests/clients.rs, tests/replicas.rs)
// ---------------------------------------------------------------------------------------

/// How long one client command may take before the test kills it and fails.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// Run a command with no stdin, kill it after [`TOOL_TIMEOUT`]; return its output.
pub fn run_timed(cmd: &mut Command) -> Output {
    run_within(cmd, TOOL_TIMEOUT)
}

/// Run a command (bounded in time), panic with its output if it fails, return its stdout.
pub fn sh(cmd: &mut Command) -> String {
    sh_within(cmd, TOOL_TIMEOUT)
}

/// Three files, one per layer: (path in the image, content).
pub fn three_files(nonce: &str) -> Vec<(String, String)> {
    vec![
        ("/hello.txt".into(), format!("hello {nonce}\n")),
        ("/app/data.txt".into(), "some data\n".repeat(100)),
        ("/etc/ferry-release".into(), "ferry test image\n".into()),
    ]
}

/// `skopeo inspect` of an image reference (`docker://...`) over plain HTTP, parsed.
pub fn skopeo_inspect(reference: &str) -> Value {
    json(&sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        reference,
    ])))
}

/// The digest podman or buildah wrote with `--digestfile`.
pub fn read_digestfile(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The `digest: sha256:... size: N` line `docker push` ends with.
pub fn docker_push_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split(" digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
        .to_string()
}

/// `docker image inspect --format FORMAT NAME`, trimmed.
pub fn docker_inspect(name: &str, format: &str) -> String {
    sh(Command::new("docker").args(["image", "inspect", "--format", format, name]))
        .trim()
        .to_string()
}

/// Build image `tag` in the OCI layout `layout` (created if missing) with umoci: one layer
/// per file, each `(path in the image, content)`.
pub fn new_image(
    layout: &Path,
    tag: &str,
    files: &[(String, String)],
    scratch: &Path,
) -> LayoutImage {
    umoci_image(layout, tag, None, files, scratch, TOOL_TIMEOUT)
}

/// `skopeo copy` an image of an OCI layout to the registry (`host/repo:tag`).
pub fn skopeo_push(layout: &Path, tag: &str, dest: &str) {
    sh(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}")));
}

/// Panic unless python3 can import the oras SDK (tests/run.sh installs it).
pub fn require_oras() {
    require(&["python3"]);
    let probe = Command::new("python3")
        .args(["-c", "import oras"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "the oras Python SDK is not installed (tests/run.sh runs `pip install oras`): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// `python3 tests/clients/oras_client.py`: push and pull artifacts with the oras SDK (its
/// arguments are in the script's docstring).
pub fn oras_client() -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oras_client.py"));
    cmd
}
