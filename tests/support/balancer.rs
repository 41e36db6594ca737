//! A real load balancer in front of several servers: nginx (Debian's `nginx-light` or
//! `nginx`), started as a plain process with its own configuration, prefix, logs and
//! temporary paths in a temporary directory, on `127.0.0.1:<random port>`, killed by its PID
//! when the handle drops. It runs as one process (`master_process off`): no workers left
//! behind, and nothing to switch users for when the tests run as root.
//!
//! What it does to requests, as a registry's balancer should:
//! - round robin over the backends (`upstream`), in the order given; a backend that refuses
//!   the connection (or does not accept it within 1 s) is skipped for the next one
//!   (`proxy_next_upstream error timeout`), never marked down (`max_fails=0`), so a
//!   restarted replica serves its turn again at once;
//! - bodies stream both ways (`proxy_request_buffering off`, `proxy_buffering off`, no size
//!   limit, HTTP/1.1 to the backend, chunked request bodies passed on as they come);
//! - `Host` is the client's own `host:port`, so the `Location` a registry answers with points
//!   back at the balancer; `X-Forwarded-For` and `X-Forwarded-Proto` are set.
//!
//! The access log names the backend(s) that served each request ([`Balancer::served`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx executable Debian installs.
const NGINX: &str = "/usr/sbin/nginx";

/// One line of the access log: a request the balancer answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The backends tried, in order (`127.0.0.1:PORT`); the last one answered (if any did).
    pub upstreams: Vec<String>,
    /// The status the client got.
    pub status: u16,
    /// The request line (`GET /v2/ HTTP/1.1`).
    pub request: String,
}

/// nginx balancing `127.0.0.1:PORT` over the backends.
pub struct Balancer {
    pub addr: SocketAddr,
    /// `127.0.0.1:PORT`, as clients name it.
    pub host: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The backends, in round-robin order.
    pub backends: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Balancer {
    /// A running balancer over `backends` (`127.0.0.1:PORT` each), or `None` (having printed
    /// `SKIP: <reason>`) when nginx is not installed. Use as
    /// `let Some(lb) = Balancer::start(&backends) else { return };`.
    pub fn start<S: AsRef<str>>(backends: &[S]) -> Option<Balancer> {
        if !Path::new(NGINX).is_file() {
            eprintln!(
                "SKIP: nginx is not installed (no {NGINX}; tests/run.sh installs Debian's nginx-light)"
            );
            return None;
        }
        assert!(!backends.is_empty(), "a balancer needs backends");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut me = Balancer {
            addr: "127.0.0.1:0".parse().unwrap(),
            host: String::new(),
            url: String::new(),
            backends: backends.iter().map(|b| b.as_ref().to_string()).collect(),
            dir,
            child: None,
        };
        // A port the OS reported free can be taken before nginx binds it: try a few.
        for _ in 0..5 {
            me.addr = super::free_port();
            me.host = me.addr.to_string();
            me.url = format!("http://{}", me.addr);
            me.spawn();
            if me.wait_ready() {
                return Some(me);
            }
            me.stop();
        }
        panic!("nginx did not start; error log:\n{}", me.error_log());
    }

    /// The balancer's temporary directory (config, logs, pid file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything nginx logged as errors (refused backends, bad requests) so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Every request answered so far, in the order they finished. nginx writes a request's
    /// line after sending its response, once done with its connection: at once when the
    /// client closes it or keeps it alive, but up to 5 s later (its lingering close) when
    /// the request had a body and the client still holds the connection open. To count the
    /// requests a client just finished, use [`Balancer::wait_served`].
    pub fn served(&self) -> Vec<Served> {
        let text = std::fs::read_to_string(self.access_log_path()).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, '\t');
                let upstreams = fields.next()?;
                let status = fields.next()?.parse().ok()?;
                let request = fields.next()?.to_string();
                Some(Served {
                    // "a:1, b:2" when the first refused; "-" when nothing was tried.
                    upstreams: upstreams
                        .split(", ")
                        .filter(|u| *u != "-" && !u.is_empty())
                        .map(str::to_string)
                        .collect(),
                    status,
                    request,
                })
            })
            .collect()
    }

    /// The backend that answered each request so far (`127.0.0.1:PORT`; `-` when none did).
    pub fn served_by(&self) -> Vec<String> {
        self.served()
            .into_iter()
            .map(|s| s.upstreams.last().cloned().unwrap_or_else(|| "-".into()))
            .collect()
    }

    /// Waits (at most 10 s) until at least `n` requests are in the access log; returns
    /// them.
    #[track_caller]
    pub fn wait_served(&self, n: usize) -> Vec<Served> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let served = self.served();
            if served.len() >= n {
                return served;
            }
            assert!(
                Instant::now() < deadline,
                "the balancer logged {} requests, expected {n}: {served:?}",
                served.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Forgets the requests logged so far (empties the access log; nginx appends to it).
    pub fn reset(&self) {
        std::fs::write(self.access_log_path(), "").expect("truncate access log");
    }

    /// Process id of nginx.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("nginx running").id()
    }

    fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let servers: String = self
            .backends
            .iter()
            .map(|b| format!("        server {b} max_fails=0;\n"))
            .collect();
        // Run as root, nginx would switch to `nobody` for its workers; as one process it
        // switches to no one, and `user` only matters to root.
        let user = if is_root() { "user root;\n" } else { "" };
        format!(
            r#"# Written by tests/support/balancer.rs.
{user}master_process off;
error_log {dir}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format upstreams '$upstream_addr\t$status\t$request';
    access_log {dir}/access.log upstreams;
    large_client_header_buffers 4 64k;

    upstream backends {{
{servers}    }}

    server {{
        listen {addr};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;
            client_max_body_size 0;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
            proxy_send_timeout 300s;
            proxy_read_timeout 300s;
        }}
    }}
}}
"#,
            addr = self.addr,
        )
    }

    fn spawn(&mut self) {
        let dir = self.dir.path().to_path_buf();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, self.config()).expect("nginx.conf");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nginx.out"))
            .expect("nginx.out");
        let mut cmd = Command::new(NGINX);
        cmd.arg("-p")
            .arg(&dir)
            // Errors before the configuration is read go here too, not to /var/log/nginx.
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
        );
    }

    fn wait_ready(&mut self) -> bool {
        super::wait_listening(self.child.as_mut(), self.addr)
    }

    /// Kills nginx (SIGKILL, by its process id).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- nginx error log (last 50 lines) ---\n{}",
                super::tail(&self.error_log(), 50)
            );
        }
        self.stop();
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective uid).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
