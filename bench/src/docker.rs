//! The `docker` workload: the docker engine end to end. An image made locally
//! (see `image.rs`) is loaded into the engine with `skopeo copy
//! oci:DIR:v1 docker-daemon:NAME:v1`, tagged `127.0.0.1:<port>/bench/e2e-<rep>:v1`
//! (the engine treats 127.0.0.0/8 as an insecure registry), and `docker push`
//! is timed; every tag is then removed so the engine no longer has the image,
//! and `docker pull` is timed. Every name this run gives the engine is
//! removed at the end, by name; nothing else in the engine is touched.

use crate::{Bench, image, run_cmd, run_cmd_async};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on one `docker push` / `docker pull` / image load.
const TIMEOUT: Duration = Duration::from_secs(600);

pub struct Engine {
    /// Prefix of the source images' names, unique to this run.
    prefix: String,
    /// Every name given to the engine, for the clean-up.
    names: Mutex<Vec<String>>,
}

/// The engine's version, or why docker cannot be used here.
pub fn check() -> Result<String> {
    let v = run_cmd(
        Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]),
        Duration::from_secs(20),
    )
    .context("docker version")?;
    Ok(v.trim().to_string())
}

/// `127.0.0.1:<port>` of a registry base URL.
pub fn host_of(base: &str) -> &str {
    base.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

/// Workload 6, docker: per repetition and registry, load that repetition's
/// image (`dir/src-<rep>`, the same for both registries, never seen by
/// either) and time `docker push`; then, in a second pass, time `docker pull`
/// of it into an engine that no longer has it.
pub async fn workload(b: &mut Bench, dir: &Path, image_label: &str) {
    eprintln!("== 6. docker push and pull of a {image_label}");
    let w = "6. docker engine";
    b.row(
        "docker-push",
        w,
        &format!("docker push, {image_label}"),
        "s",
        false,
        2,
    );
    b.cpug_row("docker-push", w, "push");
    b.row(
        "docker-pull",
        w,
        "docker pull of it (after docker rmi)",
        "s",
        false,
        2,
    );
    b.cpug_row("docker-pull", w, "pull");
    let engine = Engine::new();
    let e = &engine;
    b.ab(
        "docker push",
        &["docker-push", "docker-push-cpug"],
        move |reg, rep| async move {
            let src = dir.join(format!("src-{rep}"));
            let bytes = image::blob_bytes(&src)?;
            let name = e.load(&src, host_of(&reg.base), rep).await?;
            let secs = e.push(&name).await?;
            Ok(vec![
                ("docker-push", secs),
                ("docker-push-bytes", bytes as f64),
            ])
        },
    )
    .await;
    b.ab(
        "docker pull",
        &["docker-pull", "docker-pull-cpug"],
        move |reg, rep| async move {
            let bytes = image::blob_bytes(&dir.join(format!("src-{rep}")))?;
            let name = format!("{}/bench/e2e-{rep}:v1", host_of(&reg.base));
            let secs = e.pull(&name).await?;
            Ok(vec![
                ("docker-pull", secs),
                ("docker-pull-bytes", bytes as f64),
            ])
        },
    )
    .await;
    let left = engine.cleanup();
    eprintln!("  removed this run's images from the engine ({left} name(s) were left)");
}

impl Engine {
    pub fn new() -> Engine {
        Engine {
            prefix: format!("ferry-bench-{}", std::process::id()),
            names: Mutex::new(Vec::new()),
        }
    }

    fn remember(&self, name: &str) {
        let mut n = self.names.lock().unwrap();
        if !n.iter().any(|x| x == name) {
            n.push(name.to_string());
        }
    }

    async fn docker(&self, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new("docker");
        cmd.args(args);
        run_cmd_async(cmd, TIMEOUT).await.map(|_| ())
    }

    /// Untimed: loads `layout` into the engine as this run's source image
    /// of `rep`, and tags it for the registry at `host`. Returns that tag.
    pub async fn load(&self, layout: &Path, host: &str, rep: usize) -> Result<String> {
        let src = format!("{}/e2e-src-{rep}:v1", self.prefix);
        let dst = format!("{host}/bench/e2e-{rep}:v1");
        self.remember(&src);
        self.remember(&dst);
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker-daemon:{src}"));
        run_cmd_async(cmd, TIMEOUT)
            .await
            .context("loading the image into the engine")?;
        self.docker(&["tag", &src, &dst]).await?;
        // Only the registry's tag is left: removing it after the push
        // removes the image from the engine.
        self.docker(&["rmi", &src]).await?;
        Ok(dst)
    }

    /// Timed `docker push` of `name`, then `docker rmi` of it, so the engine
    /// no longer has the image. Seconds.
    pub async fn push(&self, name: &str) -> Result<f64> {
        let t = Instant::now();
        self.docker(&["push", "--quiet", name]).await?;
        let secs = t.elapsed().as_secs_f64();
        self.docker(&["rmi", name]).await?;
        Ok(secs)
    }

    /// Timed `docker pull` of `name`, then `docker rmi` of it. Seconds.
    pub async fn pull(&self, name: &str) -> Result<f64> {
        self.remember(name);
        let t = Instant::now();
        self.docker(&["pull", "--quiet", name]).await?;
        let secs = t.elapsed().as_secs_f64();
        self.docker(&["rmi", name]).await?;
        Ok(secs)
    }

    /// Removes every name this run gave the engine (those already gone fail
    /// quietly). Returns how many were still there.
    pub fn cleanup(&self) -> usize {
        let names = std::mem::take(&mut *self.names.lock().unwrap());
        names
            .iter()
            .filter(|n| {
                run_cmd(
                    Command::new("docker").args(["rmi", n.as_str()]),
                    Duration::from_secs(60),
                )
                .is_ok()
            })
            .count()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_base() {
        assert_eq!(host_of("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_of("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }
}
