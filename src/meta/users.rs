//! Users and their privileges: InfluxDB 1.x's model (an admin flag, and per database
//! READ, WRITE, ALL or, once revoked, NO PRIVILEGES), kept in the replicated meta like
//! databases are: per user name a lamport version, and a tombstone when dropped, so a
//! change made on any node reaches every node and a node that was down catches up.
//!
//! Passwords are kept only as bcrypt hashes (cost 10, as InfluxDB), never logged: a
//! user's `Debug` leaves the hash out. Hashing and checking cost ~60 ms of CPU each, so
//! callers run [`hash_password`] and [`verify_password`] off the core (glommio's
//! blocking pool).

use super::{Key, MetaData, MetaError, MetaStore, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// bcrypt's work factor, InfluxDB's (`bcrypt.DefaultCost`).
pub const BCRYPT_COST: u32 = 10;

/// A privilege on one database. The bits are InfluxDB's: ALL is READ | WRITE, and a
/// REVOKE clears bits (ALL minus READ leaves WRITE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Privilege {
    #[serde(rename = "NO PRIVILEGES")]
    None,
    #[serde(rename = "READ")]
    Read,
    #[serde(rename = "WRITE")]
    Write,
    #[serde(rename = "ALL PRIVILEGES")]
    All,
}

impl Privilege {
    /// As InfluxDB prints it (SHOW GRANTS, authorization errors).
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::None => "NO PRIVILEGES",
            Privilege::Read => "READ",
            Privilege::Write => "WRITE",
            Privilege::All => "ALL PRIVILEGES",
        }
    }

    fn bits(self) -> u8 {
        match self {
            Privilege::None => 0,
            Privilege::Read => 1,
            Privilege::Write => 2,
            Privilege::All => 3,
        }
    }

    fn from_bits(bits: u8) -> Privilege {
        match bits & 3 {
            0 => Privilege::None,
            1 => Privilege::Read,
            2 => Privilege::Write,
            _ => Privilege::All,
        }
    }

    /// This privilege with `other`'s bits cleared (REVOKE).
    pub fn without(self, other: Privilege) -> Privilege {
        Privilege::from_bits(self.bits() & !other.bits())
    }

    /// Whether holding `self` grants `wanted` (ALL grants both; READ and WRITE only
    /// themselves; NO PRIVILEGES wanted is always granted).
    pub fn grants(self, wanted: Privilege) -> bool {
        wanted == Privilege::None || self == wanted || self == Privilege::All
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user. The whole entry is the unit of replication.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub version: Version,
    /// The version that created it: SHOW USERS lists users in creation order, the same
    /// order on every node.
    pub created: Version,
    /// The bcrypt hash of the password.
    pub hash: String,
    pub admin: bool,
    /// Per database; a revoked entry stays as NO PRIVILEGES, as InfluxDB keeps it.
    pub privileges: BTreeMap<String, Privilege>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("admin", &self.admin)
            .field("privileges", &self.privileges)
            .finish_non_exhaustive()
    }
}

impl User {
    /// InfluxDB's `AuthorizeDatabase`: an admin may do anything; others need the
    /// privilege (or ALL) on that database.
    pub fn authorize_database(&self, wanted: Privilege, database: &str) -> bool {
        if self.admin || wanted == Privilege::None {
            return true;
        }
        self.privileges
            .get(database)
            .is_some_and(|held| held.grants(wanted))
    }
}

/// Who a request runs as, once authenticated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off: nothing is checked.
    #[default]
    Open,
    /// Authentication is on but no admin exists yet, so no credentials were checked
    /// (InfluxDB's bootstrap): only making the first admin is allowed.
    Anonymous,
    /// A user whose credentials checked out.
    User(String),
}

/// bcrypt of a password at [`BCRYPT_COST`], as InfluxDB stores it (bcrypt uses the
/// first 72 bytes). Costs ~60 ms of CPU: run it off the core.
pub fn hash_password(password: &str) -> String {
    bcrypt::hash(password, BCRYPT_COST).expect("bcrypt at a valid cost with a random salt")
}

/// Whether `password` matches a bcrypt `hash`; a malformed hash matches nothing. Costs
/// as much as hashing: run it off the core.
pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

impl MetaData {
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Users in creation order (SHOW USERS).
    pub fn users_in_order(&self) -> Vec<&User> {
        let mut users: Vec<&User> = self.users.values().collect();
        users.sort_by_key(|u| (u.created, u.name.clone()));
        users
    }

    /// Whether some user is an admin: InfluxDB authenticates only then (before, every
    /// request is anonymous and only the bootstrap is allowed).
    pub fn admin_exists(&self) -> bool {
        self.users.values().any(|u| u.admin)
    }

    fn user_version(&self, name: &str) -> Option<Version> {
        self.users
            .get(name)
            .map(|u| u.version)
            .or_else(|| self.user_tombstones.get(name).copied())
    }

    /// Merges another node's users: per name, the higher version wins (live entry or
    /// tombstone). Returns whether something changed and the highest counter seen.
    pub(super) fn merge_users(&mut self, other: &MetaData) -> (bool, u64) {
        let mut changed = false;
        let mut seen = 0;
        let names: std::collections::BTreeSet<&String> = other
            .users
            .keys()
            .chain(other.user_tombstones.keys())
            .collect();
        for name in names {
            let Some(theirs) = other.user_version(name) else {
                continue;
            };
            seen = seen.max(theirs.counter);
            if self.user_version(name).is_some_and(|ours| ours >= theirs) {
                continue;
            }
            changed = true;
            self.users.remove(name);
            self.user_tombstones.remove(name);
            match other.users.get(name) {
                Some(user) => {
                    self.users.insert(name.clone(), user.clone());
                }
                None => {
                    self.user_tombstones.insert(name.clone(), theirs);
                }
            }
        }
        (changed, seen)
    }
}

impl MetaStore {
    /// `CREATE USER name WITH PASSWORD ... [WITH ALL PRIVILEGES]` with the password's
    /// bcrypt `hash`. The caller answers the idempotent case (same password and admin
    /// flag: success) before hashing; here an existing user is `user already exists`.
    pub fn create_user(&self, name: &str, hash: String, admin: bool) -> Result<(), MetaError> {
        if name.is_empty() {
            return Err(MetaError::UsernameRequired);
        }
        self.update(|meta| {
            if meta.users.contains_key(name) {
                return Err(MetaError::UserExists);
            }
            meta.users.insert(
                name.to_string(),
                User {
                    name: name.to_string(),
                    version: Version::default(),
                    created: Version::default(),
                    hash,
                    admin,
                    privileges: BTreeMap::new(),
                },
            );
            Ok((vec![Key::User(name.to_string())], ()))
        })
    }

    /// `SET PASSWORD FOR name = ...` with the new password's bcrypt `hash`.
    pub fn set_password(&self, name: &str, hash: String) -> Result<(), MetaError> {
        self.update(|meta| {
            let user = meta.users.get_mut(name).ok_or(MetaError::UserNotFound)?;
            user.hash = hash;
            Ok((vec![Key::User(name.to_string())], ()))
        })
    }

    /// `DROP USER name`.
    pub fn drop_user(&self, name: &str) -> Result<(), MetaError> {
        self.update(|meta| {
            meta.users.remove(name).ok_or(MetaError::UserNotFound)?;
            Ok((vec![Key::User(name.to_string())], ()))
        })
    }

    /// `GRANT READ|WRITE|ALL ON db TO user`: replaces what the user held on `db`.
    pub fn grant(&self, user: &str, database: &str, privilege: Privilege) -> Result<(), MetaError> {
        self.set_privilege(user, database, |_| privilege)
    }

    /// `REVOKE READ|WRITE|ALL ON db FROM user`: clears those bits; the entry stays
    /// (NO PRIVILEGES once nothing is left), as InfluxDB keeps it.
    pub fn revoke(
        &self,
        user: &str,
        database: &str,
        privilege: Privilege,
    ) -> Result<(), MetaError> {
        self.set_privilege(user, database, |held| match privilege {
            Privilege::All => Privilege::None,
            p => held.without(p),
        })
    }

    fn set_privilege(
        &self,
        user: &str,
        database: &str,
        next: impl FnOnce(Privilege) -> Privilege,
    ) -> Result<(), MetaError> {
        self.update(|meta| {
            if !meta.users.contains_key(user) {
                return Err(MetaError::UserNotFound);
            }
            if !meta.databases.contains_key(database) {
                return Err(MetaError::DatabaseNotFound(database.to_string()));
            }
            let entry = meta.users.get_mut(user).expect("checked above");
            let held = entry
                .privileges
                .get(database)
                .copied()
                .unwrap_or(Privilege::None);
            let privilege = next(held);
            if entry.privileges.get(database) == Some(&privilege) {
                return Ok((vec![], ()));
            }
            entry.privileges.insert(database.to_string(), privilege);
            Ok((vec![Key::User(user.to_string())], ()))
        })
    }

    /// `GRANT ALL PRIVILEGES TO user` (true) / `REVOKE ALL PRIVILEGES FROM user` (false).
    pub fn set_admin(&self, user: &str, admin: bool) -> Result<(), MetaError> {
        self.update(|meta| {
            let entry = meta.users.get_mut(user).ok_or(MetaError::UserNotFound)?;
            if entry.admin == admin {
                return Ok((vec![], ()));
            }
            entry.admin = admin;
            Ok((vec![Key::User(user.to_string())], ()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap hash for tests that do not check passwords (bcrypt is slow in debug).
    fn h(s: &str) -> String {
        format!("test-hash-{s}")
    }

    #[test]
    fn privileges_are_influxdb_bits() {
        assert_eq!(Privilege::All.without(Privilege::Read), Privilege::Write);
        assert_eq!(Privilege::Read.without(Privilege::Write), Privilege::Read);
        assert_eq!(Privilege::Write.without(Privilege::Write), Privilege::None);
        assert!(Privilege::All.grants(Privilege::Read));
        assert!(!Privilege::Write.grants(Privilege::Read));
        assert!(Privilege::None.grants(Privilege::None));
    }

    #[test]
    fn passwords_are_bcrypt() {
        let hash = hash_password("s3cret");
        assert!(hash.starts_with("$2b$10$"), "{hash}");
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("s3cret ", &hash));
        assert!(!verify_password("s3cret", "not a hash"));
        let user = User {
            name: "bob".into(),
            version: Version::default(),
            created: Version::default(),
            hash,
            admin: false,
            privileges: BTreeMap::new(),
        };
        assert!(
            !format!("{user:?}").contains("$2b$"),
            "Debug leaves the hash out"
        );
    }

    #[test]
    fn user_statements_follow_influxdb() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), 1).unwrap();
        assert!(matches!(
            store.create_user("", h("x"), false),
            Err(MetaError::UsernameRequired)
        ));
        store.create_user("zed", h("a"), true).unwrap();
        store.create_user("amy", h("b"), false).unwrap();
        assert!(matches!(
            store.create_user("amy", h("b"), false),
            Err(MetaError::UserExists)
        ));
        assert!(matches!(
            store.grant("amy", "nodb", Privilege::Read),
            Err(MetaError::DatabaseNotFound(_))
        ));
        assert!(matches!(
            store.grant("nobody", "nodb", Privilege::Read),
            Err(MetaError::UserNotFound)
        ));
        store.create_database("db", None).unwrap();
        store.grant("amy", "db", Privilege::Read).unwrap();
        store.grant("amy", "db", Privilege::Write).unwrap();
        let snap = store.snapshot();
        assert_eq!(
            snap.user("amy").unwrap().privileges["db"],
            Privilege::Write,
            "GRANT replaces"
        );
        store.revoke("amy", "db", Privilege::Write).unwrap();
        assert_eq!(
            store.snapshot().user("amy").unwrap().privileges["db"],
            Privilege::None,
            "REVOKE leaves NO PRIVILEGES"
        );
        // Creation order, not name order.
        let names: Vec<String> = store
            .snapshot()
            .users_in_order()
            .iter()
            .map(|u| u.name.clone())
            .collect();
        assert_eq!(names, ["zed", "amy"]);
        assert!(store.snapshot().admin_exists());
        store.set_admin("zed", false).unwrap();
        assert!(!store.snapshot().admin_exists());
        // Persisted.
        let reopened = MetaStore::open(dir.path(), 1).unwrap();
        assert_eq!(reopened.snapshot().users.len(), 2);
        // Dropping a database takes its grants away.
        store.grant("amy", "db", Privilege::All).unwrap();
        store.drop_database("db").unwrap();
        assert!(store.snapshot().user("amy").unwrap().privileges.is_empty());
        store.drop_user("amy").unwrap();
        assert!(matches!(
            store.drop_user("amy"),
            Err(MetaError::UserNotFound)
        ));
        assert!(matches!(
            store.set_password("amy", h("c")),
            Err(MetaError::UserNotFound)
        ));
    }

    #[test]
    fn users_replicate_and_drops_win_over_older_copies() {
        let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = MetaStore::open(da.path(), 1).unwrap();
        let b = MetaStore::open(db_.path(), 2).unwrap();
        a.create_user("bob", h("1"), false).unwrap();
        b.merge(&a.snapshot()).unwrap();
        assert_eq!(b.snapshot().user("bob").unwrap().hash, h("1"));
        // A password change on B reaches A; an old copy does not undo it.
        let old = a.snapshot();
        b.set_password("bob", h("2")).unwrap();
        a.merge(&b.snapshot()).unwrap();
        assert_eq!(a.snapshot().user("bob").unwrap().hash, h("2"));
        b.merge(&old).unwrap();
        assert_eq!(b.snapshot().user("bob").unwrap().hash, h("2"));
        // A drop wins over the older live copy; a re-create after it wins again.
        a.drop_user("bob").unwrap();
        b.merge(&a.snapshot()).unwrap();
        assert!(b.snapshot().user("bob").is_none());
        a.merge(&old).unwrap();
        assert!(a.snapshot().user("bob").is_none());
        b.create_user("bob", h("3"), true).unwrap();
        a.merge(&b.snapshot()).unwrap();
        assert_eq!(a.snapshot().user("bob").unwrap().hash, h("3"));
        assert!(a.snapshot().admin_exists());
    }
}
