//! Crash-safe replacement of a small state file: checkpoints, the ledger,
//! alert state, the outbox, sessions, mailbox messages.
//!
//! Owns the one sequence that survives a power cut: write a sibling
//! temporary file, fsync it, rename it over the target, fsync the
//! directory (without the last step the rename itself may be lost, and a
//! restart reads the old state while the new one was acknowledged). It must
//! not know what the files hold; model crates do no I/O, so this is its own
//! crate rather than a module there.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temporary sibling `write_atomic` writes first: `NAME.tmp`, in the
/// same directory so that the rename never crosses file systems.
pub fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces `path` with `body`, creating its directory: after a crash the
/// file holds the old content or the new, never a mix, and once this
/// returns the new content survives one.
pub fn write_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    replace(path, body, false)
}

/// [`write_atomic`] for a file only its owner may read (mode 0600 from
/// the moment it exists): the dashboard's sessions, whose CSRF tokens are
/// not for other accounts on the machine.
pub fn write_atomic_private(path: &Path, body: &[u8]) -> io::Result<()> {
    replace(path, body, true)
}

fn replace(path: &Path, body: &[u8], private: bool) -> io::Result<()> {
    let dir = directory_of(path);
    fs::create_dir_all(&dir)?;
    let tmp = temporary(path);
    {
        let mut o = fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        }
        let mut f: File = o.open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(&dir)
}

/// Makes the directory's entries (a rename, a new or deleted file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/alerts.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!temporary(&path).exists());
    }

    #[test]
    fn a_temporary_left_by_a_crash_does_not_hide_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        write_atomic(&path, b"old").unwrap();
        // A crash between writing the temporary and the rename.
        fs::write(temporary(&path), b"half").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old");
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_private_file_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.json");
        write_atomic_private(&path, b"tokens").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        // A path under a regular file cannot be created.
        assert!(write_atomic(&file.join("state.json"), b"y").is_err());
    }
}
