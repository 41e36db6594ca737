//! Images made locally for the real clients (skopeo, the docker engine): an
//! OCI layout built with `umoci init/new/insert`, one layer per incompressible
//! random file, so every repetition can push content no registry has seen.

use crate::prng::{BlobReader, seed_of};
use crate::run_cmd;
use anyhow::Result;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Builds `layout` (tag `v1`) with one layer per entry of `layers` (bytes),
/// each a random file `/data/layer<i>.bin` generated from `seed` and the
/// layer's index. `scratch` holds the files while they are inserted.
pub fn build(layout: &Path, scratch: &Path, seed: &[u64], layers: &[u64]) -> Result<()> {
    std::fs::create_dir_all(scratch)?;
    run_cmd(
        Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(layout),
        Duration::from_secs(60),
    )?;
    let img = format!("{}:v1", layout.display());
    run_cmd(
        Command::new("umoci").args(["new", "--image", &img]),
        Duration::from_secs(60),
    )?;
    for (i, len) in layers.iter().enumerate() {
        let f = scratch.join(format!("layer{i}.bin"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&f)?);
        let mut parts = seed.to_vec();
        parts.push(i as u64);
        let mut rd = BlobReader::new(seed_of(&parts), *len, 1 << 20);
        while let Some(c) = rd.next_chunk() {
            w.write_all(&c)?;
        }
        w.flush()?;
        drop(w);
        run_cmd(
            Command::new("umoci")
                .args(["insert", "--image", &img])
                .arg(&f)
                .arg(format!("/data/layer{i}.bin")),
            Duration::from_secs(300),
        )?;
        std::fs::remove_file(&f)?;
    }
    std::fs::remove_dir_all(scratch)?;
    Ok(())
}

/// Bytes of the blobs in an OCI layout (layers, config and manifest; umoci
/// also leaves the few hundred bytes of each intermediate config and
/// manifest): what a client moves when it copies the image.
pub fn blob_bytes(layout: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(layout.join("blobs/sha256"))? {
        n += e?.metadata()?.len();
    }
    Ok(n)
}

/// "48 / 32 / 16 / 8 / 4 MiB" (one decimal below 10 MiB).
pub fn describe(layers: &[u64]) -> String {
    layers
        .iter()
        .map(|&l| {
            let m = l as f64 / (1 << 20) as f64;
            if m < 10.0 && m.fract() != 0.0 {
                format!("{m:.1}")
            } else {
                format!("{m:.0}")
            }
        })
        .collect::<Vec<_>>()
        .join(" / ")
        + " MiB"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_layers() {
        let mib = 1 << 20;
        assert_eq!(
            describe(&[48 * mib, 32 * mib, 16 * mib, 8 * mib, 4 * mib]),
            "48 / 32 / 16 / 8 / 4 MiB"
        );
        assert_eq!(describe(&[48 * mib / 10, 4 * mib / 10]), "4.8 / 0.4 MiB");
    }
}
