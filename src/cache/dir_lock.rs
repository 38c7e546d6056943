//! One pipgate per cache directory. Opening the cache cleans its temporary files, re-indexes
//! its files and compacts the owner memory: two processes doing that in one directory would
//! delete each other's fills in progress. So pipgate holds an exclusive lock on
//! `{dir}/.lock` for as long as it runs (released by the kernel however the process ends).
//!
//! Runner sidecars share a node's cache directory between jobs, and several runner pods can
//! run on one node at once: with `cache.slots = N`, pipgate takes the first of `{dir}/slot-1`
//! … `{dir}/slot-N` that no other pipgate holds, so each concurrent sidecar gets a directory of
//! its own that the next job on the node finds warm.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A held cache directory: the lock lasts as long as this value.
#[derive(Debug)]
pub struct DirLock {
    pub dir: PathBuf,
    _file: File,
}

/// Locks `dir` (with `slots` = 1) or the first free `dir/slot-{n}`.
pub fn claim(dir: &Path, slots: usize) -> std::io::Result<DirLock> {
    let candidates: Vec<PathBuf> = if slots <= 1 {
        vec![dir.to_owned()]
    } else {
        (1..=slots).map(|n| dir.join(format!("slot-{n}"))).collect()
    };
    for candidate in &candidates {
        std::fs::create_dir_all(candidate)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(candidate.join(".lock"))?;
        match file.try_lock() {
            Ok(()) => return Ok(DirLock { dir: candidate.clone(), _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
    }
    let what = if slots <= 1 {
        "is in use by another pipgate (give each its own cache.dir, or set cache.slots)".to_owned()
    } else {
        format!("has all {slots} slots in use by other pipgate processes (raise cache.slots)")
    };
    Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_refused_and_slots_are_shared_out() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path(), 1).unwrap();
        let error = claim(dir.path(), 1).unwrap_err();
        assert!(error.to_string().contains("in use by another pipgate"), "{error}");
        drop(first);
        claim(dir.path(), 1).expect("free again once the holder is gone");

        let a = claim(dir.path(), 2).unwrap();
        let b = claim(dir.path(), 2).unwrap();
        assert_eq!(
            (a.dir.file_name().unwrap(), b.dir.file_name().unwrap()),
            ("slot-1".as_ref(), "slot-2".as_ref())
        );
        assert!(claim(dir.path(), 2).unwrap_err().to_string().contains("all 2 slots"));
        drop(a);
        assert_eq!(claim(dir.path(), 2).unwrap().dir, dir.path().join("slot-1"), "the warm slot is reused");
    }
}
