//! The web UI in a real browser: Debian's headless Chromium loads the pages (`--dump-dom`
//! for what it rendered, `--screenshot` for a PNG of the requested size, kept in the test's
//! temporary directory), and deletes a tag by pressing the confirmation form's button (over
//! the DevTools protocol on a pipe: the form is posted by the browser itself, with its own
//! `Origin`). Skipped, saying SKIP, where `chromium` is not installed. One at a time
//! (`.config/nextest.toml`: the `chromium` group): a browser is heavy on two cores.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::*;

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

fn chromium_missing() -> bool {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("SKIP: chromium is not installed (tests/run.sh installs it)");
    }
    !found
}

/// Flags of every run: headless, as root in a container (no sandbox, no /dev/shm), a
/// profile of its own.
fn chromium(profile: &Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// The DOM Chromium rendered for `url`.
fn dump_dom(dir: &Path, url: &str) -> String {
    let out = chromium(&dir.join("profile"))
        .args(["--dump-dom", url])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `url` into `dir/<name>.png`, checked to be a PNG of the window's size.
fn screenshot(dir: &Path, name: &str, url: &str) -> PathBuf {
    let path = dir.join(format!("{name}.png"));
    let out = chromium(&dir.join("profile"))
        .arg(format!("--screenshot={}", path.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --screenshot {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_png(
        &std::fs::read(&path).expect("screenshot written"),
        WIDTH,
        HEIGHT,
    );
    path
}

/// A PNG (signature, then the IHDR chunk) of `width` × `height`.
fn check_png(png: &[u8], width: u32, height: u32) {
    assert!(png.len() > 33, "too short for a PNG: {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (width, height), "PNG size");
}

async fn fill(reg: &TestRegistry) -> String {
    let api = Api::new(reg);
    for name in ["team/app", "team/web", "tools/app-x"] {
        api.push_image(name, "v1", 1).await;
    }
    let amd = api.push_image("team/app", "", 1).await;
    let arm = api.push_image("team/app", "", 1).await;
    let mut amd_d = amd.descriptor();
    amd_d["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut arm_d = arm.descriptor();
    arm_d["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    api.push_manifest(
        "team/app",
        "multi",
        OCI_INDEX,
        &oci_index(&[amd_d, arm_d], json!({})),
    )
    .await
}

#[tokio::test]
async fn chromium_renders_the_list_a_search_a_tag_page_and_an_index() {
    if chromium_missing() {
        return;
    }
    let reg = TestRegistry::start();
    let index = fill(&reg).await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let url = &reg.url;

    let list = dump_dom(dir, &format!("{url}/ui/"));
    for name in ["team/app", "team/web", "tools/app-x"] {
        assert!(list.contains(name), "{name}: {list}");
    }
    screenshot(dir, "list", &format!("{url}/ui/"));

    let search = dump_dom(dir, &format!("{url}/ui/?q=app"));
    assert!(
        search.contains("tools/app-x") && !search.contains("team/web"),
        "{search}"
    );
    screenshot(dir, "search", &format!("{url}/ui/?q=app"));

    let tags = dump_dom(dir, &format!("{url}/ui/r/team/app"));
    assert!(
        tags.contains("multi") && tags.contains("linux/arm64/v8"),
        "{tags}"
    );
    assert!(
        tags.contains(&format!("docker pull {}/team/app:v1", reg.host)),
        "{tags}"
    );
    screenshot(dir, "tags", &format!("{url}/ui/r/team/app"));

    let page = format!("{url}/ui/r/team/app/-/manifest/{index}");
    let index_dom = dump_dom(dir, &page);
    assert!(
        index_dom.contains("linux/amd64") && index_dom.contains(&index),
        "{index_dom}"
    );
    screenshot(dir, "index", &page);
}

/// Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3
/// in, fd 4 out, messages ended by NUL), given through two FIFOs.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: Option<String>,
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let (input, output) = (dir.join("cdp-in"), dir.join("cdp-out"));
        for fifo in [&input, &output] {
            let status = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
            assert!(status.success());
        }
        let mut cmd = chromium(&dir.join("profile-cdp"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .chain([
                "--remote-debugging-pipe".to_string(),
                "about:blank".to_string(),
            ])
            .collect();
        cmd = Command::new("bash");
        let script = format!(
            "exec chromium {} 3<'{}' 4>'{}'",
            args.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" "),
            input.display(),
            output.display()
        );
        let child = cmd
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // The shell opens the input first, then the output: the same order here.
        let to = std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .expect("open the DevTools input");
        let from = std::fs::File::open(&output).expect("open the DevTools output");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        message.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&message)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to,
            from: rx,
            next: 0,
            session: None,
        }
    }

    /// Sends a command (to the attached page, once there is one) and waits for its answer.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        loop {
            let v = self
                .from
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no answer from chromium to {method}"));
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Waits for the page's next `load` event.
    fn loaded(&mut self) {
        loop {
            let v = self
                .from
                .recv_timeout(Duration::from_secs(30))
                .expect("the page loads");
            if v.get("method").and_then(Value::as_str) == Some("Page.loadEventFired") {
                return;
            }
        }
    }

    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = attached["sessionId"].as_str().map(str::to_string);
        self.call("Page.enable", json!({}));
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false}),
        );
        self.call("Page.navigate", json!({"url": url}));
        self.loaded();
    }

    fn eval(&mut self, expression: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )["result"]["value"]
            .clone()
    }

    fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64");
        check_png(&png, WIDTH, HEIGHT);
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn chromium_deletes_a_tag_through_the_confirmation_form() {
    if chromium_missing() {
        return;
    }
    let reg = TestRegistry::start();
    fill(&reg).await;
    let api = Api::new(&reg);
    assert_eq!(api.tags("team/app").await, ["multi", "v1"]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/ui/r/team/app/-/delete?reference=v1", reg.url);
    let reg_url = reg.url.clone();
    let dir_path = dir.path().to_path_buf();
    let (confirm, done) = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::start(&dir_path);
        browser.open(&url);
        let confirm = browser.eval("document.documentElement.outerHTML");
        browser.screenshot(&dir_path.join("confirm.png"));
        // The button of the form, pressed as a user would: the browser posts the form with
        // this page's origin.
        browser.eval("document.querySelector('form button[type=submit]').click()");
        browser.loaded();
        let done = browser.eval("document.documentElement.outerHTML");
        browser.screenshot(&dir_path.join("deleted.png"));
        // The same form from another origin (a page of its own, `data:`): refused.
        browser.call(
            "Page.navigate",
            json!({"url": format!(
                "data:text/html,<form method=post action='{reg_url}/ui/r/team/app/-/delete'>\
                 <input name=reference value=multi><button type=submit>go</button></form>"
            )}),
        );
        browser.loaded();
        browser.eval("document.querySelector('button').click()");
        browser.loaded();
        (confirm, done)
    })
    .await
    .unwrap();
    let confirm = confirm.as_str().unwrap_or_default();
    assert!(confirm.contains("Delete tag?"), "{confirm}");
    let done = done.as_str().unwrap_or_default();
    assert!(done.contains("was deleted from"), "{done}");
    assert_eq!(api.tags("team/app").await, ["multi"]);
}
