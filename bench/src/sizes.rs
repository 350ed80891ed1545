//! Sizes: the stripped release binary and the layer zips in `layer/dist`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::Options;
use crate::harness::Bench;
use crate::report::{Results, Row};

const BINARY_BYTES: u64 = 4 * 1024 * 1024;
const ZIP_BYTES: u64 = 2 * 1024 * 1024;

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .len())
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB ({bytes} bytes)", bytes as f64 / (1024.0 * 1024.0))
}

/// The size of `binary` after `strip` (into a temporary copy), and how it was taken.
fn stripped_size(binary: &Path) -> Result<(u64, &'static str)> {
    let dir = tempfile::tempdir()?;
    let stripped = dir.path().join("contrail");
    let ran = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    Ok(if ran {
        (file_size(&stripped)?, "after `strip`")
    } else {
        (file_size(binary)?, "as built (`strip` not found)")
    })
}

/// The stripped binary and the layer zips; with `--baseline`, the runs' binary beside the
/// baseline.
pub(crate) fn measure(bench: &Bench, options: &Options, results: &mut Results) -> Result<()> {
    let (size, how) = stripped_size(&bench.contrail)?;
    results.rows.push(Row::new(
        format!("binary size, target/release/contrail {how}"),
        mb(size),
        "≤ 4 MB",
        Some(size <= BINARY_BYTES),
    ));
    if let Some(baseline) = &bench.baseline {
        let (base, how) = stripped_size(&baseline.path)?;
        let (runs, _) = stripped_size(&bench.runs)?;
        let runs_name = bench
            .runs
            .strip_prefix(&options.root)
            .unwrap_or(&bench.runs);
        results.rows.push(Row::new(
            format!("binary size, `{}` {how}", runs_name.display()),
            format!(
                "{} ({:+} bytes over the baseline)",
                mb(runs),
                runs as i64 - base as i64
            ),
            "—",
            None,
        ));
        results.rows.push(Row::new(
            format!("binary size, baseline `{}` {how}", baseline.path.display()),
            mb(base),
            "—",
            None,
        ));
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
