//! A fresh, empty folder under the system temp dir, removed when dropped (shared by the test
//! binaries that include it with `#[path]`).

use std::path::PathBuf;

/// A fresh, empty folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `nacre-{prefix}-{process id}-{name}` under the system temp dir, emptied.
    pub fn new(prefix: &str, name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nacre-{prefix}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
