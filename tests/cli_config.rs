//! The command line and the configuration: version, Distribution-style YAML with
//! `REGISTRY_*` overrides, errors that name the key, refusals of keys Ferry cannot run
//! without safely, warnings for other unknown keys, loading without side effects, and a
//! clean exit on SIGTERM.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// `ferry` with no `REGISTRY_*` variables inherited from the test's environment.
fn ferry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion, killing it (and failing) if it is still running after 60 s.
fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} did not exit within 60 s; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `ferry serve <config>` started by the test itself (the harness takes no config file).
struct Served {
    child: Option<Child>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

impl Served {
    /// Writes `yaml` (with `{root}` and `{addr}` substituted) and serves it with `env`.
    fn start(yaml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        let addr = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            yaml.replace("{root}", &root.display().to_string())
                .replace("{addr}", &addr.to_string()),
        )
        .unwrap();
        let out = dir.path().join("stdout");
        let err = dir.path().join("stderr");
        let mut cmd = ferry();
        cmd.arg("serve")
            .arg(&config)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut me = Served {
            child: Some(cmd.spawn().expect("spawn ferry")),
            addr,
            _dir: dir,
            root,
            out,
            err,
        };
        me.wait_ready();
        me
    }

    fn output(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "ferry exited ({status}) instead of serving:\n{}",
                    self.output()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ferry did not start listening:\n{}", self.output());
    }

    fn api(&self) -> Api {
        let client = client_builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Api {
            client,
            url: format!("http://{}", self.addr),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let p = dir.join("config.yml");
    std::fs::write(&p, yaml).unwrap();
    p
}

fn assert_failed_naming(out: &Output, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ferry should refuse to start; stdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        names.iter().any(|n| stderr.contains(n)),
        "stderr should name {names:?}:\n{stderr}"
    );
}

#[test]
fn version_flag_prints_the_version() {
    let out = run_bounded({
        let mut c = ferry();
        c.arg("--version");
        c
    });
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version should print {}: {stdout}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn help_lists_serve() {
    let out = run_bounded({
        let mut c = ferry();
        c.arg("--help");
        c
    });
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("serve"));
}

#[test]
fn invalid_value_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: maybe\nhttp:\n  addr: {}\n",
            dir.path().join("data").display(),
            free_port()
        ),
    );
    let out = run_bounded({
        let mut c = ferry();
        c.arg("serve").arg(&config);
        c
    });
    assert_failed_naming(&out, &["storage.delete.enabled"]);
}

#[test]
fn invalid_env_override_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}\n",
            dir.path().join("data").display(),
            free_port()
        ),
    );
    let out = run_bounded({
        let mut c = ferry();
        c.arg("serve")
            .arg(&config)
            .env("REGISTRY_STORAGE_DELETE_ENABLED", "maybe");
        c
    });
    assert_failed_naming(
        &out,
        &["storage.delete.enabled", "REGISTRY_STORAGE_DELETE_ENABLED"],
    );
}

#[test]
fn unparseable_or_missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write_config(dir.path(), "version: 0.1\nstorage: [unclosed\n");
    let out = run_bounded({
        let mut c = ferry();
        c.arg("serve").arg(&broken);
        c
    });
    assert!(!out.status.success(), "{out:?}");
    assert!(!out.stderr.is_empty(), "say what is wrong: {out:?}");

    let missing = dir.path().join("nope.yml");
    let out = run_bounded({
        let mut c = ferry();
        c.arg("serve").arg(&missing);
        c
    });
    assert_failed_naming(&out, &["nope.yml"]);
}

#[tokio::test]
async fn unknown_key_only_warns() {
    let served = Served::start(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: {addr}\n  secret: s3cr3t\nfrobnicate:\n  level: 11\n",
        &[],
    );
    let api = served.api();
    let r = api.get("/v2/").await;
    r.expect(200);
    let out = served.output();
    assert!(
        out.contains("frobnicate") && out.contains("http.secret"),
        "the log should mention the unknown and the ignored key:\n{out}"
    );
}

/// A config (or `REGISTRY_*` variable) asking for something Ferry cannot do yet, whose
/// absence would leave the registry open, unencrypted or something else, stops the start
/// with status 2, naming the key, and creates nothing.
#[test]
fn keys_ferry_cannot_run_without_refuse_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let fs = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}\n",
        root.display(),
        free_port()
    );
    let s3 = format!(
        "version: 0.1\ndatabase:\n  path: {}\nstorage:\n  s3:\n    bucket: images\n    regionendpoint: http://127.0.0.1:9\n",
        root.join("ferry/metadata.db").display()
    );
    // (config, environment, the key the message must name)
    type Case<'a> = (String, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            format!("{fs}auth:\n  silly: {{realm: x, service: y}}\n"),
            &[],
            "auth.silly",
        ),
        (
            format!("{fs}  tls:\n    letsencrypt:\n      email: admin@example.com\n"),
            &[],
            "http.tls.letsencrypt.email",
        ),
        (
            format!("{s3}    usefipsendpoint: true\n"),
            &[],
            "storage.s3.usefipsendpoint",
        ),
        (format!("{fs}  prefix: /registry/\n"), &[], "http.prefix"),
        (
            fs.clone(),
            &[("REGISTRY_AUTH_SILLY_REALM", "x")],
            "auth.silly",
        ),
        (
            fs.clone(),
            &[("REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE", "/c")],
            "http.tls.letsencrypt.cachefile",
        ),
        (
            s3.clone(),
            &[("REGISTRY_STORAGE_S3_USEFIPSENDPOINT", "true")],
            "storage.s3.usefipsendpoint",
        ),
        (
            fs.clone(),
            &[("REGISTRY_HTTP_PREFIX", "/registry/")],
            "http.prefix",
        ),
        (fs.clone(), &[("REGISTRY_STORAGE", "gcs")], "storage.gcs"),
    ];
    for (yaml, env, key) in cases {
        let config = write_config(dir.path(), yaml);
        let out = run_bounded({
            let mut c = ferry();
            c.arg("serve").arg(&config).envs(env.iter().copied());
            c
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{key} ({env:?}) should refuse the start; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(key) && stderr.contains("not supported yet"),
            "stderr should name {key}:\n{stderr}"
        );
        if let Some((var, _)) = env.first() {
            assert!(stderr.contains(var), "stderr should name {var}:\n{stderr}");
        }
        assert!(!root.exists(), "a refused start created {}", root.display());
    }
}

/// `auth:` with nothing under it (or `{}`), and empty values ask for nothing.
#[tokio::test]
async fn empty_refused_keys_start() {
    for extra in ["auth:\n", "auth: {}\nproxy:\n  remoteurl: ''\n"] {
        let served = Served::start(
            &format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {{root}}\nhttp:\n  addr: {{addr}}\n  tls: {{}}\n{extra}"
            ),
            &[("REGISTRY_HTTP_PREFIX", "")],
        );
        served.api().get("/v2/").await.expect(200);
        let out = served.output();
        assert!(
            !out.contains("auth") && !out.contains("proxy"),
            "an empty key asks for nothing, not even a warning:\n{out}"
        );
    }
}

/// `ferry healthcheck` only reads the configuration: neither the configured data directory
/// nor the default one (`/var/lib/registry`, else `./ferry-data`) is created.
#[test]
fn healthcheck_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("no/such/root");
    let addr = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            root.display()
        ),
    );
    let out = run_bounded({
        let mut c = ferry();
        c.arg("healthcheck").arg(&config).args(["--timeout", "1"]);
        c
    });
    assert_eq!(out.status.code(), Some(1), "nothing listens: {out:?}");
    assert!(
        !dir.path().join("no").exists(),
        "healthcheck created the data directory"
    );

    let default_existed = Path::new("/var/lib/registry").exists();
    let cwd = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("version: 0.1\nhttp:\n  addr: {addr}\n"),
    );
    let out = run_bounded({
        let mut c = ferry();
        c.current_dir(cwd.path())
            .arg("healthcheck")
            .arg(&config)
            .args(["--timeout", "1"]);
        c
    });
    assert_eq!(out.status.code(), Some(1), "nothing listens: {out:?}");
    assert!(
        std::fs::read_dir(cwd.path()).unwrap().next().is_none(),
        "healthcheck created ./ferry-data"
    );
    if !default_existed {
        assert!(
            !Path::new("/var/lib/registry").exists(),
            "healthcheck created /var/lib/registry"
        );
    }
}

#[tokio::test]
async fn config_file_settings_take_effect() {
    // Deletes off by default (as in Distribution), data under the configured root.
    let served = Served::start(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: {addr}\n",
        &[],
    );
    let api = served.api();
    let img = api.push_image("cfg/repo", "v1", 1).await;
    assert!(
        served
            .root
            .join("docker/registry/v2/blobs/sha256")
            .join(&img.layers[0].digest[7..9])
            .join(&img.layers[0].digest[7..])
            .join("data")
            .exists(),
        "blobs live under the configured rootdirectory"
    );
    api.delete(&format!("/v2/cfg/repo/manifests/{}", img.digest))
        .await
        .expect_error(405, &["UNSUPPORTED"]);
    drop(served);

    let served = Served::start(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        &[],
    );
    let api = served.api();
    let img = api.push_image("cfg/repo", "v1", 0).await;
    api.delete(&format!("/v2/cfg/repo/manifests/{}", img.digest))
        .await
        .expect(202);
}

#[tokio::test]
async fn env_overrides_beat_the_config_file() {
    // The file enables deletes; the environment disables them.
    let served = Served::start(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "false")],
    );
    let api = served.api();
    let img = api.push_image("env/repo", "v1", 0).await;
    api.delete(&format!("/v2/env/repo/manifests/{}", img.digest))
        .await
        .expect_error(405, &["UNSUPPORTED"]);
    drop(served);

    // The file disables deletes; the environment enables them.
    let served = Served::start(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: false\nhttp:\n  addr: {addr}\n",
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
    );
    let api = served.api();
    let img = api.push_image("env/repo", "v1", 0).await;
    api.delete(&format!("/v2/env/repo/manifests/{}", img.digest))
        .await
        .expect(202);
}

#[tokio::test]
async fn delete_enabled_false_env_override_gives_405() {
    // Through the harness: it sets REGISTRY_STORAGE_DELETE_ENABLED=true, then our override.
    let reg = TestRegistry::start_with(
        Flavor::Ferry,
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "false")],
    );
    let api = Api::new(&reg);
    let img = api.push_image("envdel/repo", "v1", 1).await;
    api.delete(&format!("/v2/envdel/repo/manifests/{}", img.digest))
        .await
        .expect_error(405, &["UNSUPPORTED"]);
    api.delete("/v2/envdel/repo/manifests/v1")
        .await
        .expect_error(405, &["UNSUPPORTED"]);
    api.delete(&format!("/v2/envdel/repo/blobs/{}", img.layers[0].digest))
        .await
        .expect_error(405, &["UNSUPPORTED"]);
    api.assert_image_intact("envdel/repo", "v1", &img).await;
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_keeps_the_data() {
    let mut reg = TestRegistry::start();
    let api = Api::new(&reg);
    let img = api.push_image("term/repo", "v1", 2).await;
    let status: ExitStatus = reg.terminate();
    assert!(
        status.success(),
        "SIGTERM should exit with status 0, got {status}; log:\n{}",
        reg.log()
    );
    reg.restart();
    let api = Api::new(&reg); // fresh connections
    api.assert_image_intact("term/repo", "v1", &img).await;
    let status = reg.terminate();
    assert!(status.success(), "{status}");
}
