//! Authorization of a request's statements, as InfluxDB 1.x's `QueryAuthorizer`:
//! every statement is checked before any runs, and the first privilege a user lacks
//! refuses the whole request (HTTP 403) with InfluxDB's text.
//!
//! Who asks is a [`Principal`]: nobody checked (authentication off), nobody known
//! (authentication on but no admin yet: InfluxDB's bootstrap), or a user by name,
//! looked up in the meta snapshot the request runs with.

use crate::influxql::parser::{Required, Statement};
use crate::meta::{MetaData, Principal};

/// Checks `statements` for `principal`; `db` is the request's `db` parameter (the
/// database of privileges whose statement names none). `Err` is the text after
/// `error authorizing query: `.
pub fn authorize_query(
    meta: &MetaData,
    principal: &Principal,
    statements: &[Statement],
    db: Option<&str>,
) -> Result<(), String> {
    let name = match principal {
        Principal::Open => return Ok(()),
        Principal::Anonymous => {
            if !meta.users.is_empty() {
                return Err("no user provided".into());
            }
            // The bootstrap: with no user at all, only the first admin may be made.
            // InfluxDB lets the rest of such a request run unauthenticated too; here
            // every statement of it must be one (COMPATIBILITY.md).
            let bootstrap = !statements.is_empty()
                && statements
                    .iter()
                    .all(|s| matches!(s, Statement::CreateUser { admin: true, .. }));
            return if bootstrap {
                Ok(())
            } else {
                Err("create admin user first or disable authentication".into())
            };
        }
        Principal::User(name) => name,
    };
    let Some(user) = meta.user(name) else {
        // Dropped since it authenticated.
        return Err("no user provided".into());
    };
    if user.admin {
        return Ok(());
    }
    for statement in statements {
        for required in statement.required_privileges() {
            match required {
                Required::Admin => {
                    return Err(format!(
                        "{name} not authorized to execute statement '{statement}', requires admin privilege"
                    ))
                }
                Required::On {
                    privilege,
                    database,
                } => {
                    let database = database.as_deref().or(db).unwrap_or("");
                    if !user.authorize_database(privilege, database) {
                        return Err(format!(
                            "{name} not authorized to execute statement '{statement}', requires {privilege} on {database}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::parser::parse_query;
    use crate::meta::{MetaStore, Privilege};

    fn check(meta: &MetaData, who: &Principal, q: &str, db: Option<&str>) -> Result<(), String> {
        authorize_query(meta, who, &parse_query(q).unwrap(), db)
    }

    #[test]
    fn privileges_as_influxdb() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), 1).unwrap();
        let anonymous = Principal::Anonymous;
        let empty = store.snapshot();
        assert_eq!(
            check(&empty, &anonymous, "SHOW DATABASES", None).unwrap_err(),
            "create admin user first or disable authentication"
        );
        check(
            &empty,
            &anonymous,
            "CREATE USER a WITH PASSWORD 'x' WITH ALL PRIVILEGES",
            None,
        )
        .unwrap();
        assert!(check(
            &empty,
            &anonymous,
            "CREATE USER a WITH PASSWORD 'x' WITH ALL PRIVILEGES; DROP DATABASE x",
            None
        )
        .is_err());
        assert!(check(&empty, &anonymous, "CREATE USER a WITH PASSWORD 'x'", None).is_err());
        check(&empty, &Principal::Open, "DROP DATABASE x", None).unwrap();

        store.create_database("db1", None).unwrap();
        store.create_database("db2", None).unwrap();
        store.create_user("admin", "h".into(), true).unwrap();
        store.create_user("reader", "h".into(), false).unwrap();
        store.grant("reader", "db1", Privilege::Read).unwrap();
        let meta = store.snapshot();
        let reader = Principal::User("reader".into());
        check(
            &meta,
            &Principal::User("admin".into()),
            "DROP DATABASE db1",
            None,
        )
        .unwrap();
        check(&meta, &reader, "SELECT * FROM cpu", Some("db1")).unwrap();
        check(&meta, &reader, "SHOW DATABASES", None).unwrap();
        for (q, db, text) in [
            (
                "SHOW USERS",
                None,
                "statement 'SHOW USERS', requires admin privilege",
            ),
            (
                "SELECT * FROM cpu",
                None,
                "statement 'SELECT * FROM cpu', requires READ on ",
            ),
            (
                "SELECT * FROM db1..cpu, db2..cpu",
                None,
                "statement 'SELECT * FROM db1..cpu, db2..cpu', requires READ on db2",
            ),
            (
                "DELETE FROM cpu",
                Some("db1"),
                "statement 'DELETE FROM cpu', requires WRITE on db1",
            ),
            (
                "SELECT * INTO db1..copy FROM cpu",
                Some("db1"),
                "statement 'SELECT * INTO db1..copy FROM cpu', requires WRITE on db1",
            ),
            (
                "SET PASSWORD FOR reader = 'x'",
                None,
                "statement 'SET PASSWORD FOR reader = [REDACTED]', requires admin privilege",
            ),
        ] {
            assert_eq!(
                check(&meta, &reader, q, db).unwrap_err(),
                format!("reader not authorized to execute {text}"),
                "{q}"
            );
        }
        // A user dropped since it authenticated, and users with no admin left.
        assert_eq!(
            check(
                &meta,
                &Principal::User("gone".into()),
                "SHOW DATABASES",
                None
            )
            .unwrap_err(),
            "no user provided"
        );
        assert_eq!(
            check(&meta, &anonymous, "SHOW DATABASES", None).unwrap_err(),
            "no user provided"
        );
    }
}
