//! Authentication (`[http] auth-enabled`), as InfluxDB 1.x: who a request is.
//!
//! Credentials come from, in order: the `u` and `p` query parameters (both
//! non-empty), an `Authorization: Token user:password` header (InfluxDB 1.7.3+), HTTP
//! Basic. Nothing is checked while no admin exists (InfluxDB's bootstrap: the request
//! is anonymous and may only make the first admin). The answers are InfluxDB's: 401
//! `unable to parse authentication credentials`, `username required`, `authorization
//! failed` (an unknown user and a wrong password alike), each with `WWW-Authenticate:
//! Basic realm="InfluxDB"`.
//!
//! A password is checked with bcrypt (~60 ms of CPU) on glommio's blocking pool, at
//! most [`MAX_CONCURRENT_CHECKS`] at once per core. A success is remembered per core
//! (at most [`crate::limits::AUTH_CACHE_USERS_PER_CORE`] users) as a salted SHA-256
//! of the password beside the bcrypt hash it matched: the next request with the same
//! password costs one SHA-256, and the entry is void as soon as the user's hash
//! changes (SET PASSWORD, DROP and CREATE again, on any node) — InfluxDB's cache kept
//! an old password working after a drop and re-create.
//!
//! Brute force: failures are counted per (source address, user name) on each core.
//! Past `auth-failures-before-delay` of them, each further attempt waits its turn:
//! `auth-failure-delay-ms`, doubling per failure up to `auth-failure-delay-max-ms`;
//! an attempt that would wait longer than that maximum is answered `authorization
//! failed` unchecked. A success, or `auth-failure-memory-ms` without a failure,
//! forgets the pair. The answers stay InfluxDB's (only slower), so clients see
//! nothing new; the counters are in `/debug/vars` (`httpd`: `authFail`, ...) and
//! `/metrics`.

use crate::config::HttpConfig;
use crate::meta::{MetaData, MetaStore, Principal};
use crate::metrics::CoreStats;
use base64::Engine;
use hyper::header::AUTHORIZATION;
use hyper::http::HeaderMap;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// bcrypt checks one core runs at once; more wait for a turn.
pub const MAX_CONCURRENT_CHECKS: u64 = 4;

/// Credentials as a request carries them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    User {
        name: String,
        password: String,
    },
    /// `Authorization: Bearer <JWT>`: InfluxDB's shared-secret tokens, not supported.
    Bearer,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::User { name, .. } => write!(f, "User({name:?}, [REDACTED])"),
            Credentials::Bearer => f.write_str("Bearer"),
        }
    }
}

/// Why a request is not authenticated: the 401's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Unparsable,
    UsernameRequired,
    Failed,
    BearerDisabled,
}

impl Refused {
    pub fn text(self) -> &'static str {
        match self {
            Refused::Unparsable => "unable to parse authentication credentials",
            Refused::UsernameRequired => "username required",
            Refused::Failed => "authorization failed",
            Refused::BearerDisabled => "bearer auth disabled",
        }
    }
}

/// Reads credentials as InfluxDB's `parseCredentials` does. `u` and `p` are the
/// decoded query parameters.
pub fn parse_credentials(
    u: Option<&str>,
    p: Option<&str>,
    headers: &HeaderMap,
) -> Result<Credentials, Refused> {
    if let (Some(u), Some(p)) = (u, p) {
        if !u.is_empty() && !p.is_empty() {
            return Ok(Credentials::User {
                name: u.to_string(),
                password: p.to_string(),
            });
        }
    }
    // Go's Header.Get: the first Authorization header.
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(Refused::Unparsable);
    };
    let value = value.as_bytes();
    if value.is_empty() {
        return Err(Refused::Unparsable);
    }
    let parts: Vec<&[u8]> = value.split(|&b| b == b' ').collect();
    if parts.len() == 2 {
        match parts[0] {
            b"Bearer" => return Ok(Credentials::Bearer),
            b"Token" => {
                if let Some(at) = parts[1].iter().position(|&b| b == b':') {
                    return Ok(Credentials::User {
                        name: String::from_utf8_lossy(&parts[1][..at]).into_owned(),
                        password: String::from_utf8_lossy(&parts[1][at + 1..]).into_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    basic(value).ok_or(Refused::Unparsable)
}

/// Go's `Request.BasicAuth`: `Basic ` (any case), standard base64 of `user:password`,
/// split at the first colon.
fn basic(value: &[u8]) -> Option<Credentials> {
    const PREFIX: &[u8] = b"basic ";
    if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[PREFIX.len()..])
        .ok()?;
    let at = decoded.iter().position(|&b| b == b':')?;
    Some(Credentials::User {
        name: String::from_utf8_lossy(&decoded[..at]).into_owned(),
        password: String::from_utf8_lossy(&decoded[at + 1..]).into_owned(),
    })
}

/// A password that checked out against a bcrypt hash, remembered cheaply.
struct Verified {
    /// The bcrypt hash it matched: void once the user's hash is another.
    hash: String,
    salt: [u8; 16],
    digest: [u8; 32],
}

fn salted(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Equal without an early exit (a digest's prefix is not revealed by timing).
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Recent failures of one (source address, user name).
struct Failures {
    count: u32,
    last: Instant,
    /// The next attempt may not be checked before this.
    next_turn: Instant,
}

/// The back-off settings, from `[http]`.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    free: u32,
    base: Duration,
    max: Duration,
    memory: Duration,
}

impl Backoff {
    /// The wait after `count` failures.
    fn delay(&self, count: u32) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// This core's authenticator.
pub struct Authenticator {
    enabled: bool,
    meta: Arc<MetaStore>,
    stats: Rc<CoreStats>,
    backoff: Backoff,
    verified: RefCell<HashMap<String, Verified>>,
    failures: RefCell<HashMap<(IpAddr, String), Failures>>,
    checks: glommio::sync::Semaphore,
}

/// A hash no password matches, checked for unknown users so that they cost what a
/// wrong password costs (response times do not tell which names exist).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| crate::meta::hash_password("shardcore: no such user"))
}

impl Authenticator {
    pub fn new(config: &HttpConfig, meta: Arc<MetaStore>, stats: Rc<CoreStats>) -> Authenticator {
        Authenticator {
            enabled: config.auth_enabled,
            meta,
            stats,
            backoff: Backoff {
                free: config.auth_failures_before_delay,
                base: Duration::from_millis(config.auth_failure_delay_ms),
                max: Duration::from_millis(config.auth_failure_delay_max_ms),
                memory: Duration::from_millis(config.auth_failure_memory_ms),
            },
            verified: RefCell::new(HashMap::new()),
            failures: RefCell::new(HashMap::new()),
            checks: glommio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Who a request is. `Err` is the 401 to send (counted as an `authFail`).
    pub async fn authenticate(
        &self,
        u: Option<&str>,
        p: Option<&str>,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Result<Principal, Refused> {
        if !self.enabled {
            return Ok(Principal::Open);
        }
        let meta = self.meta.snapshot();
        if !meta.admin_exists() {
            return Ok(Principal::Anonymous);
        }
        let outcome = match parse_credentials(u, p, headers) {
            Err(e) => Err(e),
            Ok(Credentials::Bearer) => Err(Refused::BearerDisabled),
            Ok(Credentials::User { name, .. }) if name.is_empty() => Err(Refused::UsernameRequired),
            Ok(Credentials::User { name, password }) => {
                self.check(&meta, name, password, peer).await
            }
        };
        if outcome.is_err() {
            CoreStats::add(&self.stats.auth_failures, 1);
        }
        outcome
    }

    /// Checks a user's password: the remembered digest, else bcrypt off the core
    /// after the pair's back-off.
    async fn check(
        &self,
        meta: &MetaData,
        name: String,
        password: String,
        peer: IpAddr,
    ) -> Result<Principal, Refused> {
        let user = meta.user(&name);
        if let Some(user) = user {
            if let Some(v) = self.verified.borrow().get(&name) {
                if v.hash == user.hash && same_digest(&salted(&v.salt, &password), &v.digest) {
                    return Ok(Principal::User(name));
                }
            }
        }
        let key = (peer, name);
        self.wait_turn(&key).await?;
        let hash = user.map(|u| u.hash.clone());
        let matched = {
            // The semaphore is never closed, so a permit always comes.
            let _turn = self.checks.acquire_permit(1).await;
            CoreStats::add(&self.stats.auth_password_checks, 1);
            let candidate = password.clone();
            let checked = hash.clone();
            glommio::executor()
                .spawn_blocking(move || match checked {
                    Some(hash) => crate::meta::verify_password(&candidate, &hash),
                    None => {
                        // An unknown user costs what a wrong password costs.
                        crate::meta::verify_password(&candidate, decoy_hash());
                        false
                    }
                })
                .await
        };
        let Some(hash) = hash.filter(|_| matched) else {
            let (peer, name) = key;
            self.failed((peer, name));
            return Err(Refused::Failed);
        };
        self.failures.borrow_mut().remove(&key);
        let (_, name) = key;
        let salt: [u8; 16] = rand_salt();
        let mut verified = self.verified.borrow_mut();
        if verified.len() >= crate::limits::AUTH_CACHE_USERS_PER_CORE
            && !verified.contains_key(&name)
        {
            // At the limit: forget one (it checks with bcrypt again next time).
            if let Some(k) = verified.keys().next().cloned() {
                verified.remove(&k);
            }
        }
        verified.insert(
            name.clone(),
            Verified {
                digest: salted(&salt, &password),
                hash,
                salt,
            },
        );
        Ok(Principal::User(name))
    }

    /// Waits for the pair's turn after recent failures; `Err` when the wait would
    /// pass the back-off's maximum (answered unchecked).
    async fn wait_turn(&self, key: &(IpAddr, String)) -> Result<(), Refused> {
        let now = Instant::now();
        let wait = {
            let mut failures = self.failures.borrow_mut();
            let Some(f) = failures.get_mut(key) else {
                return Ok(());
            };
            if now.duration_since(f.last) > self.backoff.memory {
                failures.remove(key);
                return Ok(());
            }
            let delay = self.backoff.delay(f.count);
            if delay.is_zero() {
                return Ok(());
            }
            let turn = f.next_turn.max(now);
            let wait = turn - now;
            if wait > self.backoff.max {
                CoreStats::add(&self.stats.auth_backoff_refused, 1);
                return Err(Refused::Failed);
            }
            // Taken as if it will fail: the attempts after it queue behind it.
            f.next_turn = turn + delay;
            wait
        };
        if !wait.is_zero() {
            CoreStats::add(&self.stats.auth_delayed, 1);
            glommio::timer::sleep(wait).await;
        }
        Ok(())
    }

    /// Counts a failure of the pair (bounded table: expired pairs go first, then the
    /// pair whose last failure is oldest).
    fn failed(&self, key: (IpAddr, String)) {
        let now = Instant::now();
        let mut failures = self.failures.borrow_mut();
        if !failures.contains_key(&key)
            && failures.len() >= crate::limits::AUTH_FAILURE_PAIRS_PER_CORE
        {
            let memory = self.backoff.memory;
            failures.retain(|_, f| now.duration_since(f.last) <= memory);
            if failures.len() >= crate::limits::AUTH_FAILURE_PAIRS_PER_CORE {
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            next_turn: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        entry.next_turn = entry.next_turn.max(now + self.backoff.delay(entry.count));
    }

    /// Pairs with recent failures on this core (a gauge).
    pub fn tracked_failures(&self) -> usize {
        self.failures.borrow().len()
    }
}

/// 16 random bytes (the cache's salt) from the OS.
fn rand_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    // getrandom(2) never fails for 16 bytes once the pool is initialised; a short
    // read leaves zeros, which only weakens a salt that never leaves this process.
    // SAFETY: the buffer is valid for its length.
    unsafe {
        libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0);
    }
    salt
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(auth: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_bytes(auth).unwrap());
        h
    }

    fn user(name: &str, password: &str) -> Credentials {
        Credentials::User {
            name: name.into(),
            password: password.into(),
        }
    }

    #[test]
    fn credentials_are_read_as_influxdb_reads_them() {
        let none = HeaderMap::new();
        assert_eq!(
            parse_credentials(Some("a"), Some("b"), &none),
            Ok(user("a", "b"))
        );
        assert_eq!(
            parse_credentials(Some("a"), Some(""), &none),
            Err(Refused::Unparsable)
        );
        assert_eq!(
            parse_credentials(None, None, &none),
            Err(Refused::Unparsable)
        );
        // u and p win over the header; one of them alone falls back to it.
        let basic = headers(b"Basic Ym9iOnB3OmV4dHJh"); // bob:pw:extra
        assert_eq!(
            parse_credentials(Some("a"), Some("b"), &basic),
            Ok(user("a", "b"))
        );
        assert_eq!(
            parse_credentials(Some("a"), None, &basic),
            Ok(user("bob", "pw:extra"))
        );
        assert_eq!(
            parse_credentials(None, None, &headers(b"bAsIc Ym9iOnB3")),
            Ok(user("bob", "pw"))
        );
        assert_eq!(
            parse_credentials(None, None, &headers(b"Token bob:p:w")),
            Ok(user("bob", "p:w"))
        );
        assert_eq!(
            parse_credentials(None, None, &headers(b"Bearer x.y.z")),
            Ok(Credentials::Bearer)
        );
        for bad in [
            &b"Token bob"[..],
            b"token bob:pw",
            b"Basic  Ym9iOnB3",
            b"Basic",
            b"Basic !!!",
            b"Basic Ym9i",
            b"Digest x",
        ] {
            assert_eq!(
                parse_credentials(None, None, &headers(bad)),
                Err(Refused::Unparsable),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_credentials(None, None, &headers(b"Basic OnB3")),
            Ok(user("", "pw"))
        );
    }

    #[test]
    fn backoff_doubles_to_its_maximum() {
        let b = Backoff {
            free: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            memory: Duration::from_secs(60),
        };
        assert_eq!(b.delay(2), Duration::ZERO);
        assert_eq!(b.delay(3), Duration::from_millis(100));
        assert_eq!(b.delay(4), Duration::from_millis(200));
        assert_eq!(b.delay(9), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(2));
    }

    proptest::proptest! {
        /// Credentials come from the network: no bytes panic their parsing.
        #[test]
        fn arbitrary_credentials_never_panic(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            u in proptest::option::of(".{0,8}"),
            p in proptest::option::of(".{0,8}"),
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                h.insert(AUTHORIZATION, v);
            }
            let _ = parse_credentials(u.as_deref(), p.as_deref(), &h);
            let mut b = b"Basic ".to_vec();
            b.extend_from_slice(&value);
            let _ = basic(&b);
        }
    }
}
