//! Files that are either complete or absent: everything eqae writes goes
//! to a temporary name beside its final path (`.<name>.<pid>.tmp`) and is
//! renamed into place once whole, so a kill, a full disk or an error never
//! leaves a partial file under a final name, and never removes the
//! previous complete one before the new one is ready.
//!
//! This is the lowest layer of the crate: it imports nothing of eqae.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The temporary path `path` is written under before it is renamed:
/// `.<name>.<pid>.tmp<ext>` in the same folder (the same file system, so
/// the rename is atomic). `ext` keeps an extension a writer needs to see
/// (plotters picks the image format from it).
pub fn temp_path(path: &Path, ext: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp{ext}", std::process::id()));
    path.with_file_name(name)
}

/// [`check_writable`] for an output flag whose file must end in `.ext`.
pub fn check_output(path: &Path, ext: &str, what: &str) -> Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some(ext) {
        anyhow::bail!("{what} {}: the output must end in .{ext}", path.display());
    }
    check_writable(path, what)
}

/// Check, before any long work, that `path` can be written later: its
/// folder exists (created if needed) and accepts a file, and `path` is not
/// a folder. The error names the path.
pub fn check_writable(path: &Path, what: &str) -> Result<()> {
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
        anyhow::bail!("{what} {}: is a folder, not a file", path.display());
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // device, process and kernel folders hold no results (and as root a
    // file could be made there)
    let real = std::fs::canonicalize(parent).unwrap_or(parent.to_path_buf());
    if ["/dev", "/proc", "/sys"]
        .iter()
        .any(|d| real.starts_with(d))
    {
        anyhow::bail!(
            "{what} {}: {} holds devices or system files, not results; choose another folder",
            path.display(),
            real.display()
        );
    }
    std::fs::create_dir_all(parent).with_context(|| {
        format!(
            "{what} {}: cannot create the folder {}",
            path.display(),
            parent.display()
        )
    })?;
    let probe = temp_path(path, ".probe");
    std::fs::write(&probe, b"")
        .with_context(|| format!("{what} {}: cannot write there", path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Write `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    with_temp(path, "", |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", path.display()))
    })
}

/// Write several files that belong together (a model and its weights)
/// so that a kill or an error never leaves a mix of old and new ones: all
/// are written whole under temporary names first (a full disk stops here,
/// with the old files untouched), then the old companions (every file
/// after the first) are removed, the first renamed into place, and the
/// companions after it. A kill in between leaves the old first file alone
/// or the new one alone, never beside a companion it does not belong with.
pub fn write_together(files: &[(&Path, &[u8])]) -> Result<()> {
    let mut written = Vec::new();
    for (path, bytes) in files {
        let tmp = temp_path(path, "");
        let done = std::fs::write(&tmp, bytes)
            .with_context(|| format!("cannot write {}", path.display()))
            .and_then(|_| sync(&tmp));
        written.push(tmp);
        if let Err(e) = done {
            for t in &written {
                let _ = std::fs::remove_file(t);
            }
            return Err(e);
        }
    }
    for (path, _) in files.iter().skip(1) {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot replace {}", path.display()))
            }
            _ => {}
        }
    }
    for ((path, _), tmp) in files.iter().zip(&written) {
        std::fs::rename(tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    }
    Ok(())
}

/// Let `fill` write the file at a temporary path, then rename it to `path`;
/// on an error the temporary file is removed and `path` is left as it was.
pub fn with_temp<T>(path: &Path, ext: &str, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = temp_path(path, ext);
    let result = fill(&tmp).and_then(|value| {
        sync(&tmp)?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        Ok(value)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Flush a written file to the disk, so that a rename never publishes a
/// file whose blocks a crash of the machine could still lose.
fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// SHA-256 of a file's bytes, hex, read in blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut block)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Remove the temporary files a killed writer left beside `path` (any
/// process's `.<name>.<pid>.tmp*`).
pub fn remove_stale(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = n.strip_prefix(&prefix) {
            // `<pid>.tmp...`: only temporary files of this naming
            let mut parts = rest.splitn(2, '.');
            // only those of processes that are gone: a live writer's stay
            let dead = parts
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| pid == std::process::id() || !alive(pid));
            if dead && parts.next().is_some_and(|r| r.starts_with("tmp")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Whether a process with this id exists.
fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write(&path, b"old").unwrap();
        let r: Result<()> = with_temp(&path, "", |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporaries_of_one_file_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.npy");
        std::fs::write(temp_path(&path, ""), b"x").unwrap();
        std::fs::write(dir.path().join(".f.npy.123.tmp.png"), b"x").unwrap();
        std::fs::write(dir.path().join(".f.npy.notes"), b"x").unwrap();
        remove_stale(&path);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![".f.npy.notes".to_string()]);
    }
}
