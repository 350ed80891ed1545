//! Sizes: the stripped release binary and the layer zips in `layer/dist`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::Options;
use crate::harness::Bench;
use crate::report::{Results, Row};

const BINARY_BYTES: u64 = 4 * 1024 * 1024;
/// The stripped layer binary at commit `c85ae33`, the last one before SigV4 and the secrets
/// resolver (ADR 0012): `layer/build.sh x86_64` there, rustc 1.95.0. The growth row compares the
/// binary measured now with it, and how much they may add; changes that land later count too.
const BINARY_BYTES_BEFORE_SIGV4: u64 = 3_322_184;
const SIGV4_GROWTH: u64 = 150 * 1024;
const ZIP_BYTES: u64 = 2 * 1024 * 1024;

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .len())
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB ({bytes} bytes)", bytes as f64 / (1024.0 * 1024.0))
}

/// The stripped binary and the layer zips.
pub(crate) fn measure(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stripped = dir.path().join("contrail");
    let ran = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&bench.contrail)
        .status()
        .is_ok_and(|s| s.success());
    let (size, how) = if ran {
        (file_size(&stripped)?, "after `strip`")
    } else {
        (file_size(&bench.contrail)?, "as built (`strip` not found)")
    };
    results.rows.push(Row::new(
        format!("binary size, target/release/contrail {how}"),
        mb(size),
        "≤ 4 MB",
        Some(size <= BINARY_BYTES),
    ));
    // The baseline is the x86_64 layer build: compare with the same build, not with
    // target/release/contrail (glibc, another linker).
    let layer = options
        .root
        .join("target/lambda-x86_64/extensions/contrail");
    match std::fs::metadata(&layer) {
        Ok(m) => {
            let layer_size = m.len();
            let growth = layer_size.saturating_sub(BINARY_BYTES_BEFORE_SIGV4);
            results.rows.push(Row::new(
                "binary growth since c85ae33, before SigV4 and the secrets resolver (ADR 0012), \
                 target/lambda-x86_64/extensions/contrail",
                format!(
                    "{:.1} KiB ({layer_size} bytes, {growth} over {BINARY_BYTES_BEFORE_SIGV4})",
                    growth as f64 / 1024.0
                ),
                "≤ 150 KB",
                Some(growth <= SIGV4_GROWTH),
            ));
        }
        Err(_) => results.notes.push(
            "Binary growth since c85ae33: no x86_64 layer build in target/lambda-x86_64 \
             (build it with `layer/build.sh x86_64`)."
                .to_owned(),
        ),
    }
    let dist = options.root.join("layer/dist");
    let mut zips: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "zip"))
                .collect()
        })
        .unwrap_or_default();
    zips.sort();
    if zips.is_empty() {
        results
            .notes
            .push("Layer zips: none in layer/dist (build them with `layer/build.sh`).".to_owned());
    }
    for zip in zips {
        let size = file_size(&zip)?;
        let name = zip
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        results.rows.push(Row::new(
            format!("layer zip, {name}"),
            mb(size),
            "≤ 2 MB",
            Some(size <= ZIP_BYTES),
        ));
    }
    Ok(())
}
