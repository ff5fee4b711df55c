//! Writing files so that a crash, a full disk or a `kill -9` never leaves a half-written one
//! under the real name: the bytes go to a temporary file in the same folder, which is synced and
//! then renamed over the target (a rename within one file system is atomic). Everything the crate
//! saves goes through here: sessions, recordings, datasets, checkpoints, weights, reports and
//! pictures.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically, creating its folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// Lets `write` fill a temporary file (its path is the argument), then syncs it and renames it
/// to `path`. On any error the temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = temporary_path(path)?;
    let result = write(&tmp).and_then(|()| {
        let sync = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
        sync.and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.NAME.tmpPID` next to `path`: hidden, and unique per process so two programs writing the
/// same file never share a temporary.
fn temporary_path(path: &Path) -> Result<PathBuf> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::bad_file(path, "not a file path"))?;
    Ok(path.with_file_name(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    )))
}

/// Encodes `img` as PNG and writes it atomically.
pub fn save_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::bad_file(path, format!("cannot encode PNG: {e}")))?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("nacre-files-{}", std::process::id()));
        let path = dir.join("sub").join("f.bin");
        write_atomic(&path, b"old").unwrap();
        let failed = write_atomic_with(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::Other("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
