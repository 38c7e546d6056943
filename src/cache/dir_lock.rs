//! One pipgate per cache directory. Opening the cache cleans its temporary files, re-indexes
//! its files and compacts the owner memory: two processes doing that in one directory would
//! delete each other's fills in progress. So pipgate holds an exclusive lock on
//! `{dir}/.lock` for as long as it runs (released by the kernel however the process ends).
//!
//! Runner sidecars share a node's cache directory between jobs, and several runner pods can
//! run on one node at once: with `cache.slots = N`, pipgate takes the first of `{dir}/slot-1`
//! … `{dir}/slot-N` that no other pipgate holds, so each concurrent sidecar gets a directory of
//! its own that the next job on the node finds warm. (Replicas sharing a ReadWriteMany volume
//! do the same.)
//!
//! When every slot is held, pipgate waits for one for `cache.lock_wait` before it gives up: in
//! a rolling update the new pod starts while the old one, on the same volume, still drains.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A held cache directory: the lock lasts as long as this value.
#[derive(Debug)]
pub struct DirLock {
    pub dir: PathBuf,
    _file: File,
}

/// Locks `dir` (with `slots` = 1) or the first free `dir/slot-{n}`, waiting up to `wait`
/// for one to come free.
pub async fn claim_waiting(dir: &Path, slots: usize, wait: std::time::Duration) -> std::io::Result<DirLock> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut logged = false;
    loop {
        match claim(dir, slots) {
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() < deadline =>
            {
                if !logged {
                    tracing::warn!(dir = %dir.display(), ?wait, "the cache directory is held by another pipgate: waiting for it");
                    logged = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            result => return result,
        }
    }
}

/// Locks `dir` (with `slots` = 1) or the first free `dir/slot-{n}`, at once.
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
        "is in use by another pipgate (give each its own cache.dir, or set cache.slots; cache.lock_wait is how long pipgate waits)".to_owned()
    } else {
        format!("has all {slots} slots in use by other pipgate processes (raise cache.slots)")
    };
    Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_start_waits_for_the_holder_to_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path(), 1).unwrap();
        let waiting = tokio::spawn({
            let dir = dir.path().to_owned();
            async move { claim_waiting(&dir, 1, std::time::Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits while the directory is held");
        drop(first);
        let second = waiting.await.unwrap().expect("taken once the holder is gone");
        claim(dir.path(), 1).unwrap_err();
        let gave_up = claim_waiting(dir.path(), 1, std::time::Duration::from_millis(300)).await.unwrap_err();
        assert!(gave_up.to_string().contains("in use by another pipgate"), "{gave_up}");
        drop(second);
    }

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
