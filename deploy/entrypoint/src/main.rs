//! Entrypoint of the Ferry container image, installed as `/usr/local/bin/ferry` and
//! `/usr/local/bin/ferry-gc`; the real binaries live in `/usr/local/lib/ferry/`.
//!
//! The image has no shell, so the usual "entrypoint script + gosu" is this small program.
//! Started as root (the image default, like `registry:2`), it decides which user runs the
//! real binary, then `exec`s it (Ferry stays PID 1 and receives `docker stop`'s SIGTERM):
//!
//! * data directory owned by a non-root user: run as that user (uid and gid of the directory);
//! * data directory owned by root and empty, or missing (what `docker run -v /host/dir:...`
//!   creates): hand it to `FERRY_UID:FERRY_GID` (default 1000:1000) and run as that user;
//! * data directory owned by root with data in it (an existing `registry:2` volume): stay
//!   root, as `registry:2` did, and say so in the log (never a recursive chown of user data);
//! * `FERRY_RUN_AS_ROOT=true`, or started as non-root (`--user`, Kubernetes `runAsUser`):
//!   run as started. A non-root `ferry serve` that cannot write the data directory gets a
//!   clear message before the server starts.
//!
//! The data directory is `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` when set, else
//! `/var/lib/registry` (the image's volume).

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Where the real `ferry` and `ferry-gc` are.
const LIBEXEC: &str = "/usr/local/lib/ferry";
/// The image's volume.
const DEFAULT_DATA_DIR: &str = "/var/lib/registry";
/// The unprivileged user and group the image runs as when the data directory allows it.
const DEFAULT_ID: u32 = 1000;

unsafe extern "C" {
    fn geteuid() -> u32;
}

fn say(message: &str) {
    eprintln!("ferry-entrypoint: {message}");
}

/// Who runs the real binary.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// As started.
    AsIs,
    /// As `uid:gid`, after giving them the data directory when `chown` is set.
    Drop { uid: u32, gid: u32, chown: bool },
}

/// What the entrypoint found about the data directory.
#[derive(Debug, Clone, Copy)]
enum DataDir {
    Missing,
    /// Owner uid and gid, and whether it holds anything besides `lost+found`.
    Present {
        uid: u32,
        gid: u32,
        empty: bool,
    },
    /// Cannot be examined.
    Unknown,
}

fn examine(dir: &Path) -> DataDir {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let empty = match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .all(|e| e.file_name() == "lost+found"),
                Err(_) => false,
            };
            DataDir::Present {
                uid: meta.uid(),
                gid: meta.gid(),
                empty,
            }
        }
        Ok(_) => DataDir::Unknown,
        Err(e) if e.kind() == io::ErrorKind::NotFound => DataDir::Missing,
        Err(_) => DataDir::Unknown,
    }
}

/// The decision, for a process running as root. `serving`: the command is `ferry serve`
/// (only the server may take over an empty or missing directory).
fn plan_as_root(data: DataDir, serving: bool, id: (u32, u32)) -> Plan {
    match data {
        DataDir::Present { uid, gid, .. } if uid != 0 => Plan::Drop {
            uid,
            gid,
            chown: false,
        },
        DataDir::Present { empty: true, .. } | DataDir::Missing if serving => Plan::Drop {
            uid: id.0,
            gid: id.1,
            chown: true,
        },
        _ => Plan::AsIs,
    }
}

fn env_id(name: &str) -> u32 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            say(&format!(
                "{name}={v:?} is not a numeric id; using {DEFAULT_ID}"
            ));
            DEFAULT_ID
        }),
        Err(_) => DEFAULT_ID,
    }
}

fn env_true(name: &str) -> bool {
    matches!(
        std::env::var(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

/// Creates (when missing) and chowns the data directory for the unprivileged user.
fn hand_over(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
}

/// For a non-root server: can this process create files in `dir`? A clear message now beats
/// a database error later.
fn check_writable(dir: &Path, euid: u32) {
    if std::fs::create_dir_all(dir).is_err() && !dir.is_dir() {
        say(&format!(
            "ERROR: data directory {} does not exist and cannot be created by uid {euid}; \
             mount a volume there that this user may write, or run the container as root (--user 0)",
            dir.display()
        ));
        return;
    }
    let probe = dir.join(format!(".ferry-write-test-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            let owner = std::fs::metadata(dir)
                .map(|m| {
                    format!(
                        "owned by {}:{}, mode {:o}",
                        m.uid(),
                        m.gid(),
                        m.mode() & 0o7777
                    )
                })
                .unwrap_or_else(|_| "owner unknown".into());
            say(&format!(
                "ERROR: data directory {} is not writable by uid {euid} ({owner}): {e}. \
                 Give the volume to this user (on the host: chown -R {euid} <volume dir>) \
                 or run the container as root (--user 0).",
                dir.display()
            ));
        }
    }
}

/// Whether `tool rest...` starts the server: `ferry` with no command, `serve`, or a YAML
/// config file as its first argument (as `registry:2`'s image accepts), and `registry serve`.
fn is_serve(tool: &str, rest: &[OsString]) -> bool {
    let first = rest.first().map(|a| a.to_string_lossy());
    match (tool, first.as_deref()) {
        ("ferry", None) => true,
        ("ferry" | "registry", Some("serve")) => true,
        ("ferry", Some(a)) => a.ends_with(".yml") || a.ends_with(".yaml"),
        _ => false,
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("ferry"));
    let rest: Vec<OsString> = args.collect();
    let tool = match Path::new(&argv0).file_name().and_then(|n| n.to_str()) {
        Some("ferry-gc") => "ferry-gc",
        Some("registry") => "registry",
        _ => "ferry",
    };
    let real = Path::new(LIBEXEC).join(tool);
    let serving = is_serve(tool, &rest);
    let data_dir = std::env::var_os("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { geteuid() };
    let mut plan = Plan::AsIs;
    if euid != 0 {
        if serving {
            check_writable(&data_dir, euid);
        }
    } else if !env_true("FERRY_RUN_AS_ROOT") {
        let id = (env_id("FERRY_UID"), env_id("FERRY_GID"));
        let found = examine(&data_dir);
        plan = plan_as_root(found, serving, id);
        match plan {
            Plan::Drop {
                uid,
                gid,
                chown: true,
            } => {
                if let Err(e) = hand_over(&data_dir, uid, gid) {
                    say(&format!(
                        "cannot give {} to {uid}:{gid} ({e}); running as root",
                        data_dir.display()
                    ));
                    plan = Plan::AsIs;
                } else {
                    say(&format!(
                        "{} was empty: gave it to {uid}:{gid}; running as uid {uid}",
                        data_dir.display()
                    ));
                }
            }
            Plan::Drop {
                uid,
                gid,
                chown: false,
            } => {
                if serving {
                    say(&format!(
                        "running as {uid}:{gid}, the owner of {}",
                        data_dir.display()
                    ));
                }
            }
            Plan::AsIs => {
                if serving {
                    if let DataDir::Present { uid: 0, .. } = found {
                        say(&format!(
                            "WARNING: running as root because {} is owned by root and holds data \
                             (a registry:2 volume?). To run unprivileged, stop the container and \
                             chown -R 1000:1000 the volume directory on the host.",
                            data_dir.display()
                        ));
                    }
                }
            }
        }
    }

    let mut cmd = Command::new(&real);
    cmd.arg0(tool).args(&rest);
    let err = match plan {
        Plan::Drop { uid, gid, .. } => {
            let err = Command::new(&real)
                .arg0(tool)
                .args(&rest)
                .uid(uid)
                .gid(gid)
                .exec();
            say(&format!(
                "cannot switch to {uid}:{gid} ({err}); running as root"
            ));
            cmd.exec()
        }
        Plan::AsIs => cmd.exec(),
    };
    say(&format!("cannot run {}: {err}", real.display()));
    ExitCode::from(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: (u32, u32) = (1000, 1000);

    #[test]
    fn serving_is_recognised_under_every_name() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(is_serve("ferry", &args(&[])));
        assert!(is_serve("ferry", &args(&["serve", "/c.yml"])));
        assert!(is_serve(
            "ferry",
            &args(&["/etc/docker/registry/config.yml"])
        ));
        assert!(is_serve("registry", &args(&["serve", "/c.yml"])));
        assert!(!is_serve("registry", &args(&["garbage-collect", "/c.yml"])));
        assert!(!is_serve("ferry", &args(&["gc"])));
        assert!(!is_serve("ferry-gc", &args(&[])));
    }

    #[test]
    fn a_directory_owned_by_a_user_is_used_as_that_user() {
        let d = DataDir::Present {
            uid: 1234,
            gid: 99,
            empty: false,
        };
        for serving in [true, false] {
            assert_eq!(
                plan_as_root(d, serving, ID),
                Plan::Drop {
                    uid: 1234,
                    gid: 99,
                    chown: false
                }
            );
        }
    }

    #[test]
    fn an_empty_or_missing_directory_is_handed_to_the_unprivileged_user_by_the_server() {
        for d in [
            DataDir::Missing,
            DataDir::Present {
                uid: 0,
                gid: 0,
                empty: true,
            },
        ] {
            assert_eq!(
                plan_as_root(d, true, ID),
                Plan::Drop {
                    uid: 1000,
                    gid: 1000,
                    chown: true
                }
            );
            assert_eq!(plan_as_root(d, false, ID), Plan::AsIs);
        }
    }

    #[test]
    fn a_root_owned_directory_with_data_keeps_root() {
        let d = DataDir::Present {
            uid: 0,
            gid: 0,
            empty: false,
        };
        assert_eq!(plan_as_root(d, true, ID), Plan::AsIs);
        assert_eq!(plan_as_root(DataDir::Unknown, true, ID), Plan::AsIs);
    }
}
