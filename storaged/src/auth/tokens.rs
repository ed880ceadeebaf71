//! Simple tokens: random strings naming an authenticated user, made when an Authenticate
//! entry is applied (so every member knows them), kept in memory only, and dropped after
//! `--auth-token-ttl` without use, when the user is deleted or changes password, when auth is
//! disabled, and when the member restarts (as etcd's simple tokens).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Tokens kept before expired ones are swept on the next grant.
const SWEEP_AT: usize = 1024;

pub struct Tokens {
    ttl: Duration,
    map: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    user: String,
    expires: Instant,
}

/// The random part of a token: 16 ASCII letters (etcd's shape, `<letters>.<index>`).
pub fn random_prefix() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| {
            let c = rng.gen_range(0..52u8);
            char::from(if c < 26 { b'a' + c } else { b'A' + c - 26 })
        })
        .collect()
}

/// The log index a simple token was made at, if it has the shape of one.
pub fn index_of(token: &str) -> Option<u64> {
    let (_, index) = token.rsplit_once('.')?;
    index.parse().ok()
}

impl Tokens {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `<prefix>.<index>` a token of `user`; returns it.
    pub fn grant(&self, prefix: &str, index: u64, user: &str) -> String {
        let token = format!("{prefix}.{index}");
        let now = Instant::now();
        let mut map = self.map.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| e.expires > now);
        }
        map.insert(
            token.clone(),
            Entry {
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The user `token` names, if it is valid; using it restarts its idle time.
    pub fn user_of(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.map.lock();
        match map.get_mut(token) {
            Some(e) if e.expires > now => {
                e.expires = now + self.ttl;
                Some(e.user.clone())
            }
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn invalidate_user(&self, user: &str) {
        self.map.lock().retain(|_, e| e.user != user);
    }

    pub fn invalidate_all(&self) {
        self.map.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_when_idle_and_are_refreshed_by_use() {
        let tokens = Tokens::new(Duration::from_secs(2));
        let t = tokens.grant(&random_prefix(), 42, "alice");
        assert_eq!(index_of(&t), Some(42));
        assert_eq!(t.len(), 16 + 3);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(600));
            assert_eq!(tokens.user_of(&t).as_deref(), Some("alice"), "used in time");
        }
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(tokens.user_of(&t), None, "idle too long");
        let a = tokens.grant("a", 1, "alice");
        let b = tokens.grant("b", 2, "bob");
        tokens.invalidate_user("alice");
        assert_eq!(tokens.user_of(&a), None);
        assert_eq!(tokens.user_of(&b).as_deref(), Some("bob"));
        tokens.invalidate_all();
        assert_eq!(tokens.user_of(&b), None);
        assert_eq!(tokens.user_of("garbage"), None);
        assert_ne!(random_prefix(), random_prefix());
    }
}
