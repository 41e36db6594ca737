//! A throwaway PostgreSQL server for the tests of Ferry's PostgreSQL metadata: Debian's
//! `postgresql` package (the highest `/usr/lib/postgresql/<version>/bin`, or the directory
//! `FERRY_TEST_PG_BIN` names), one cluster in a temporary directory, listening on
//! `127.0.0.1:<random port>` only, stopped when the handle drops. Each test creates its own
//! databases on it ([`PostgresServer::create_database`]).
//!
//! Speed: `initdb` costs about a second, so it runs once per machine and PostgreSQL binary
//! into a template directory under the system temp dir (`ferry-test-pg-*`), which every
//! server copies (24 MB: 0.1 to 0.3 s, longer on a loaded machine) before starting (about
//! 0.15 s). The cluster runs with `fsync=off` and `full_page_writes=off`: test data need not
//! survive a power cut, only a killed server. `synchronous_commit` stays `on`: with it off, a commit is acknowledged
//! before its WAL leaves the server's memory, and [`PostgresServer::kill`] loses it (seen: a
//! table created just before the kill was gone after the restart), which would make the
//! crash tests test nothing; with `fsync=off` a synchronous commit costs one `write`.
//!
//! Users: the server cannot run as root. Run as root, the cluster belongs to the `postgres`
//! user and the processes are started as that user directly (the child's uid and gid are
//! set, as `runuser -u postgres` would, so the process this handle holds *is* the
//! postmaster and is stopped by its own PID); run as anyone else, as the current user.
//!
//! Failure tests: [`PostgresServer::kill`] (SIGKILL to the postmaster and its backends, as
//! a crash or a lost machine), [`PostgresServer::stop_hard`] (immediate shutdown, what
//! `pg_ctl stop -m immediate` sends) and [`PostgresServer::restart`] on the same port and
//! data.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::run_within;

/// How long the postmaster may take to accept connections, and to exit when told to.
const PG_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one client command (`createdb`, `psql`).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Changes when [`template`] makes its cluster differently, so an older one is not reused.
const TEMPLATE_LAYOUT: &str = "t2";

/// The settings every test cluster runs with (tests only: no durability against power loss;
/// commits do survive a killed server, see the module's documentation).
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "200"),
    ("logging_collector", "off"),
];

/// The operating-system user the cluster runs as.
#[derive(Clone, Debug)]
struct Owner {
    /// Set when we are root: the `postgres` user's uid and gid.
    switch_to: Option<(u32, u32)>,
    /// The uid owning the files (for the template's name).
    uid: u32,
}

/// A running (or stopped, between [`PostgresServer::kill`] and
/// [`PostgresServer::restart`]) PostgreSQL cluster on `127.0.0.1:PORT`, superuser
/// `postgres` without a password (`trust`).
pub struct PostgresServer {
    pub addr: SocketAddr,
    /// The PostgreSQL binaries used (`.../bin`).
    pub bin: PathBuf,
    /// How long [`PostgresServer::start`] took (copy of the template and startup; plus
    /// `initdb` for the first server on the machine).
    pub startup: Duration,
    owner: Owner,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Runs with PostgreSQL's own `fsync` and `full_page_writes` (on), not the tests' `off`.
    durable: bool,
}

impl PostgresServer {
    /// A running server with only the default databases, or `None` (having printed
    /// `SKIP: <reason>`) when PostgreSQL is not installed or cannot run here. Use as
    /// `let Some(pg) = PostgresServer::start() else { return };`.
    pub fn start() -> Option<Self> {
        match Self::try_start() {
            Ok(me) => Some(me),
            Err(reason) => {
                eprintln!("SKIP: {reason}");
                None
            }
        }
    }

    /// [`PostgresServer::start`], with the reason instead of the skip. Panics when
    /// PostgreSQL is installed but the server does not come up (a broken setup fails the
    /// test instead of skipping it).
    pub fn try_start() -> Result<Self, String> {
        Self::try_start_with(false)
    }

    /// A server that syncs its commits as a production one does (`fsync` and
    /// `full_page_writes` on): for benchmarks that compare it with SQLite, which syncs too.
    pub fn start_durable() -> Option<Self> {
        Self::try_start_with(true)
            .map_err(|reason| eprintln!("SKIP: {reason}"))
            .ok()
    }

    fn try_start_with(durable: bool) -> Result<Self, String> {
        let started = Instant::now();
        let bin = pg_bin_dir()?;
        let owner = owner()?;
        let dir = tempfile::tempdir().expect("temp dir");
        // The postgres user must reach the data directory inside.
        set_mode(dir.path(), 0o755);
        let template = template(&bin, &owner);
        let data = dir.path().join("data");
        super::run(Command::new("cp").arg("-a").arg(&template).arg(&data));
        let mut me = PostgresServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            bin,
            startup: Duration::ZERO,
            owner,
            dir,
            child: None,
            durable,
        };
        // A port the OS reported free can be taken before the postmaster binds it.
        for _ in 0..5 {
            me.addr = super::free_port();
            me.spawn();
            if me.wait_ready() {
                me.startup = started.elapsed();
                return Ok(me);
            }
            me.kill();
        }
        panic!("PostgreSQL did not start; log:\n{}", me.log());
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{}/{db}", self.addr)
    }

    /// Creates the database `name` (letters, digits and `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name {name:?}: use letters, digits and _"
        );
        let mut cmd = self.client("createdb");
        cmd.arg(name);
        let out = run_within(&mut cmd, CLIENT_TIMEOUT);
        super::stdout_of_success(&cmd, out);
        self.url(name)
    }

    /// Runs `sql` with `psql` in `db` (stopping at the first error) and returns its
    /// unaligned, tuples-only output (`|` between columns, a line per row); panics if it
    /// fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(db, sql);
        assert!(out.status.success(), "psql {sql:?} in {db} failed: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`PostgresServer::psql`]'s whole output, whether it succeeded or not (e.g. against a
    /// stopped server).
    pub fn try_psql(&self, db: &str, sql: &str) -> std::process::Output {
        let mut cmd = self.client("psql");
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ]);
        run_within(&mut cmd, CLIENT_TIMEOUT)
    }

    /// A client program of the same installation (`psql`, `createdb`, `pg_dump`, ...)
    /// aimed at this server as `postgres`.
    pub fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.arg("-h")
            .arg(self.addr.ip().to_string())
            .arg("-p")
            .arg(self.addr.port().to_string())
            .arg("-U")
            .arg("postgres")
            .env_remove("PGPASSWORD")
            .env_remove("PGDATABASE")
            .env_remove("PGSERVICE")
            .env("PGCONNECT_TIMEOUT", "5");
        cmd
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("postgres running").id()
    }

    /// Whether the postmaster is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL to the postmaster and all its processes at once: connections drop without a
    /// word, as when the database machine dies. The data stays for [`restart`].
    ///
    /// [`restart`]: PostgresServer::restart
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut pids = children_of(child.id());
        pids.push(child.id());
        signal("KILL", &pids);
        let _ = child.wait();
        // Backends still attached to the shared memory would stop a new postmaster.
        wait_gone(&pids);
    }

    /// Immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate` sends): the postmaster
    /// kills its backends and exits without a checkpoint; the next start recovers from
    /// the WAL. Waits for it to exit (killing it if it takes longer than 30 s).
    pub fn stop_hard(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The postmaster waits for its backends before it exits.
        signal("QUIT", &[child.id()]);
        let deadline = Instant::now() + PG_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    self.child = Some(child);
                    self.kill();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Starts the server again on the same port and data (stopping it hard first if it
    /// runs); returns once it accepts connections.
    pub fn restart(&mut self) {
        self.stop_hard();
        self.spawn();
        assert!(
            self.wait_ready(),
            "PostgreSQL did not start again on {}; log:\n{}",
            self.addr,
            self.log()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn spawn(&mut self) {
        let data = self.data_dir();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(self.addr.port().to_string())
            .arg("-c")
            .arg(format!("unix_socket_directories={}", data.display()));
        for (k, v) in SETTINGS {
            if self.durable && matches!(*k, "fsync" | "full_page_writes") {
                continue;
            }
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.owner.apply(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
        );
    }

    /// Waits until the postmaster reports itself ready in `postmaster.pid` (as `pg_ctl -w`
    /// does) and accepts a TCP connection; false if it exited or took longer than 30 s.
    fn wait_ready(&mut self) -> bool {
        let pid_file = self.data_dir().join("postmaster.pid");
        let deadline = Instant::now() + PG_TIMEOUT;
        while Instant::now() < deadline {
            let Some(child) = self.child.as_mut() else {
                return false;
            };
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited (port taken, ...)
            }
            let ready = std::fs::read_to_string(&pid_file).is_ok_and(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines.first() == Some(&child.id().to_string().as_str())
                    && lines.get(7).map(|s| s.trim()) == Some("ready")
            });
            if ready
                && std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                    .is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL log (last 50 lines) ---\n{}",
                super::tail(&self.log(), 50)
            );
        }
        self.stop_hard();
    }
}

impl Owner {
    /// Runs `cmd` as the cluster's owner.
    fn apply(&self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.switch_to {
            cmd.uid(uid).gid(gid).env("HOME", "/var/lib/postgresql");
        }
    }
}

/// The PostgreSQL binaries: `FERRY_TEST_PG_BIN`, else the highest version's
/// `/usr/lib/postgresql/<version>/bin` holding `postgres` and `initdb`.
fn pg_bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("FERRY_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .map_err(|_| "PostgreSQL is not installed (no /usr/lib/postgresql; tests/run.sh installs Debian's postgresql)".to_string())?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").is_file() && bin.join("initdb").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin".to_string())
}

/// Who runs the cluster: the current user, or `postgres` when we are root.
fn owner() -> Result<Owner, String> {
    // The owner of /proc/self is the process's effective uid.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if uid != 0 {
        return Ok(Owner {
            switch_to: None,
            uid,
        });
    }
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .map_err(|e| format!("getent: {e}"))?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    match (
        fields.get(2).and_then(|s| s.parse().ok()),
        fields.get(3).and_then(|s| s.parse().ok()),
    ) {
        (Some(uid), Some(gid)) if out.status.success() => Ok(Owner {
            switch_to: Some((uid, gid)),
            uid,
        }),
        _ => Err("running as root and there is no `postgres` user to run PostgreSQL as".into()),
    }
}

/// The cluster every server copies: made once by `initdb` (superuser `postgres`, `trust`
/// authentication, UTF-8, C locale) into the system temp dir, named after the binaries and
/// the owner so another installation or user gets its own. Concurrent test processes may
/// both run `initdb`; the first to rename its result into place wins.
fn template(bin: &Path, owner: &Owner) -> PathBuf {
    let initdb = bin.join("initdb");
    let stamp = std::fs::metadata(&initdb).map(|m| m.mtime()).unwrap_or(0);
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = std::env::temp_dir();
    let template = base.join(format!(
        "ferry-test-pg{version}-{stamp}-uid{}-{TEMPLATE_LAYOUT}",
        owner.uid
    ));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    let scratch = tempfile::Builder::new()
        .prefix("ferry-test-pg-initdb")
        .tempdir_in(&base)
        .expect("temp dir");
    set_mode(scratch.path(), 0o755);
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    if let Some((uid, gid)) = owner.switch_to {
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown data dir");
    }
    let mut cmd = Command::new(&initdb);
    cmd.arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
        // 1 MB WAL segments instead of 16: 15 MB less to copy for every server.
        .args(["--wal-segsize=1", "--no-sync"])
        .current_dir(scratch.path());
    owner.apply(&mut cmd);
    let out = run_within(&mut cmd, Duration::from_secs(120));
    super::stdout_of_success(&cmd, out);
    // Another process may have won the race: its template is as good as ours.
    if std::fs::rename(&data, &template).is_err() && !template.join("PG_VERSION").is_file() {
        panic!("cannot move the initdb result to {}", template.display());
    }
    template
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The processes whose parent is `pid` (from `/proc`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// `kill -<sig> <pids>`, ignoring processes already gone.
fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits (at most 10 s) until none of `pids` is alive (gone, or a zombie).
fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    };
    while pids.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
