//! Users from an htpasswd file (`htpasswd -B`: bcrypt), re-read when the file changes.
//!
//! bcrypt is slow on purpose (tens of milliseconds at the usual cost), and pip sends the same
//! Basic credential with every request of an install. So a password is checked with bcrypt
//! once, off the async runtime, and a success is remembered for a few minutes under a
//! sha256 of user and password (never the password itself), tied to the file's current
//! contents: when the file changes, every remembered success is forgotten, so a removed user
//! or a changed password takes effect on the next request.
//!
//! Only bcrypt entries are accepted. htpasswd's other formats (MD5 `$apr1$`, SHA-1 `{SHA}`,
//! crypt) are fast to brute-force; a file with one is refused, naming its line, and a later
//! edit that adds one keeps the last good contents (logged).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::config::UpstreamSet;

/// How long a verified password is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Htpasswd {
    file: PathBuf,
    reads: UpstreamSet,
    users: RwLock<Arc<Users>>,
    verified: moka::sync::Cache<[u8; 32], ()>,
}

/// One reading of the file.
#[derive(Debug)]
struct Users {
    modified: Option<SystemTime>,
    hashes: HashMap<String, String>,
    /// Tells one reading from the next in the remembered successes.
    generation: u64,
}

impl Htpasswd {
    /// Reads the file now (an error names the file and line) and watches it for changes.
    pub fn open(file: &Path, reads: UpstreamSet) -> Result<Arc<Htpasswd>, String> {
        let (modified, hashes) = read(file)?;
        let htpasswd = Arc::new(Htpasswd {
            file: file.to_owned(),
            reads,
            users: RwLock::new(Arc::new(Users { modified, hashes, generation: 0 })),
            verified: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(REMEMBER).build(),
        });
        tokio::spawn(watch(Arc::downgrade(&htpasswd)));
        Ok(htpasswd)
    }

    pub fn reads(&self) -> UpstreamSet {
        self.reads
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.users().hashes.contains_key(user)
    }

    fn users(&self) -> Arc<Users> {
        self.users.read().expect("htpasswd lock").clone()
    }

    /// `Some(true)` when this password was verified recently (and the file is unchanged);
    /// `None` when bcrypt must decide.
    pub fn cached(&self, user: &str, password: &str) -> Option<bool> {
        let users = self.users();
        self.verified.contains_key(&remembered_key(users.generation, user, password)).then_some(true)
    }

    /// Checks the password with bcrypt on the blocking pool, and remembers a success.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let users = self.users();
        let Some(hash) = users.hashes.get(user).cloned() else {
            return false;
        };
        let presented = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(presented, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok {
            self.verified.insert(remembered_key(users.generation, user, password), ());
        }
        ok
    }

    /// Re-reads the file if its modification time changed; a broken file keeps the last good
    /// contents.
    fn reload_if_changed(&self) {
        let modified = std::fs::metadata(&self.file).and_then(|m| m.modified()).ok();
        let current = self.users();
        if modified == current.modified {
            return;
        }
        match read(&self.file) {
            Ok((modified, hashes)) => {
                let count = hashes.len();
                let generation = current.generation + 1;
                *self.users.write().expect("htpasswd lock") =
                    Arc::new(Users { modified, hashes, generation });
                self.verified.invalidate_all();
                tracing::info!(file = %self.file.display(), users = count, "htpasswd file re-read");
            }
            Err(error) => {
                tracing::error!(%error, "htpasswd file changed but cannot be used; keeping its last good contents");
                // Not again until it changes once more.
                let users =
                    Users { modified, hashes: current.hashes.clone(), generation: current.generation };
                *self.users.write().expect("htpasswd lock") = Arc::new(users);
            }
        }
    }
}

/// Polls the file until the `Htpasswd` is dropped.
async fn watch(htpasswd: std::sync::Weak<Htpasswd>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(htpasswd) = htpasswd.upgrade() else { return };
        let _ = tokio::task::spawn_blocking(move || htpasswd.reload_if_changed()).await;
    }
}

fn remembered_key(generation: u64, user: &str, password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(generation.to_le_bytes());
    hasher.update(user.as_bytes());
    hasher.update([0]);
    hasher.update(password.as_bytes());
    hasher.finalize().into()
}

/// The file's users and bcrypt hashes.
fn read(file: &Path) -> Result<(Option<SystemTime>, HashMap<String, String>), String> {
    let shown = file.display();
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("cannot read htpasswd file {shown}: {e}"))?;
    let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
    Ok((modified, parse(&text).map_err(|e| format!("htpasswd file {shown}: {e}"))?))
}

/// `user:hash` lines; blank lines and `#` comments are skipped.
pub fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = number + 1;
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {number} is not user:hash"));
        };
        if user.is_empty() {
            return Err(format!("line {number} has an empty user name"));
        }
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) || hash.len() != 60 {
            return Err(format!(
                "line {number} (user {user:?}) is not a bcrypt entry; only bcrypt is accepted (htpasswd -B)"
            ));
        }
        if users.insert(user.to_owned(), hash.to_owned()).is_some() {
            return Err(format!("line {number}: user {user:?} is listed twice"));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_lines_are_accepted() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = parse(&format!("# users\n\nalice:{hash}\n")).unwrap();
        assert!(bcrypt::verify("pw", &users["alice"]).unwrap());
        for (bad, says) in [
            ("bob:$apr1$abc$def".to_owned(), "line 1 (user \"bob\") is not a bcrypt entry"),
            ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_owned(), "not a bcrypt entry"),
            ("nocolon".to_owned(), "line 1 is not user:hash"),
            (format!("a:{hash}\na:{hash}"), "line 2: user \"a\" is listed twice"),
        ] {
            let error = parse(&bad).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }
}
