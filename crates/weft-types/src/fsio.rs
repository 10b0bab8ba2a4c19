//! Files only their owner may read, written so a crash never leaves them torn: the agent's data dir (node ID, Raft
//! log and snapshot, saved registrations) and the private keys `weft tls` makes.
//!
//! Directories are created 0700 and files 0600 from the start, so there is no moment in which another local user
//! can open them; ones an earlier version left wider are tightened rather than refused. A file is replaced by writing
//! a temporary file beside it, fsyncing it, renaming it over the old one and fsyncing the directory: after a crash
//! the old contents or the new are there, never an empty or half-written file.
//!
//! The one module of this crate that does I/O: every crate that writes under the data dir shares it.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories only their owner may list and enter.
pub const PRIVATE_DIR: u32 = 0o700;
/// Files only their owner may read and write.
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` and any missing parents as 0700; an existing `dir` loses its group and other permissions. Parents
/// that exist already are left alone: they may be shared (`/var/lib`, `/tmp`).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    tighten(dir)
}

/// Takes the group and other permissions away from `path` (a file or a directory; the owner's are kept). A path
/// that does not exist has nothing to tighten.
pub fn tighten(path: &Path) -> io::Result<()> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode & 0o700))
}

/// Replaces `path` with `bytes`, atomically and durably; the file is created with `mode` (before a byte is written).
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temporary(path)?;
    // A temporary file a crash left behind may have any mode, and opening it would keep that: start afresh.
    remove_if_exists(&tmp)?;
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Fsyncs the directory holding `path`, so a file created or renamed there survives a power loss as a name too.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Removes `path`; one that does not exist is fine.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `<name>.tmp` beside `path`.
fn temporary(path: &Path) -> io::Result<PathBuf> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        ));
    };
    let mut name = name.to_os_string();
    name.push(".tmp");
    Ok(path.with_file_name(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "weft-fsio-{}-{}-{name}",
            std::process::id(),
            crate::ids::new_uuid()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_directories_and_files_are_private_from_the_start() {
        let top = temp_dir("new");
        let dir = top.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(
            (mode(&top), mode(&top.join("a")), mode(&dir)),
            (0o700, 0o700, 0o700)
        );
        let file = dir.join("state.json");
        atomic_write(&file, b"{}", PRIVATE_FILE).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"{}");
        let _ = std::fs::remove_dir_all(&top);
    }

    #[test]
    fn wider_modes_are_tightened_and_the_owner_keeps_its_own() {
        let dir = temp_dir("wide");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o2775)).unwrap();
        let file = dir.join("node-id");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        private_dir(&dir).unwrap();
        tighten(&file).unwrap();
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        let readonly = dir.join("ro");
        std::fs::write(&readonly, "x").unwrap();
        std::fs::set_permissions(&readonly, Permissions::from_mode(0o444)).unwrap();
        tighten(&readonly).unwrap();
        assert_eq!(mode(&readonly), 0o400);
        tighten(&dir.join("missing")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_replaced_file_gets_the_new_mode_and_no_temporary_is_left() {
        let dir = temp_dir("replace");
        private_dir(&dir).unwrap();
        let file = dir.join("local.json");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        // A temporary file a crash left behind, readable by everyone.
        std::fs::write(dir.join("local.json.tmp"), "torn").unwrap();
        std::fs::set_permissions(dir.join("local.json.tmp"), Permissions::from_mode(0o666))
            .unwrap();
        atomic_write(&file, b"new", PRIVATE_FILE).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert_eq!(mode(&file), 0o600);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["local.json"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = temp_dir("fail");
        private_dir(&dir).unwrap();
        // The target is a directory: the rename fails after the temporary file was written.
        let target = dir.join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "keep").unwrap();
        assert!(atomic_write(&target, b"new", PRIVATE_FILE).is_err());
        assert!(!dir.join("taken.tmp").exists());
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"keep");
        assert!(atomic_write(Path::new("/"), b"x", PRIVATE_FILE).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
