//! What SQL a plugin (or an HTTP read-only query) may run.
//!
//! The rules are enforced with SQLite's authorizer, which sees every action
//! a statement would take when it is prepared, so they cannot be dodged by
//! spelling (comments, case, quoting). A denial is recorded with its reason
//! so the caller gets a clear error instead of SQLite's "not authorized".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Prefix of the host's bookkeeping tables in a projection database.
pub const HOST_TABLE_PREFIX: &str = "refract_";

/// PRAGMAs that only read schema information; their argument, if any,
/// names a table or index.
const SCHEMA_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// PRAGMAs that may be read but, given an argument, would change something.
const READABLE_PRAGMAS: &[&str] = &["collation_list", "function_list", "user_version", "schema_version"];

/// Which rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A plugin's statements: its own tables only, no transaction control,
    /// no file access, no PRAGMA writes. Enforced only while the guard is
    /// [armed](SqlGuard::arm), so the host's own statements on the same
    /// connection (checkpoints) are unaffected.
    Plugin,
    /// A read-only query over HTTP: no writes of any kind and no access to
    /// other files. Always enforced.
    ReadOnly,
}

/// The authorizer installed on one connection.
#[derive(Clone)]
pub struct SqlGuard {
    armed: Arc<AtomicBool>,
    denial: Arc<Mutex<Option<String>>>,
}

impl SqlGuard {
    /// Installs the authorizer for `policy` on `conn`.
    pub fn install(conn: &mut Connection, policy: Policy) -> rusqlite::Result<Self> {
        let guard = SqlGuard {
            armed: Arc::new(AtomicBool::new(policy == Policy::ReadOnly)),
            denial: Arc::new(Mutex::new(None)),
        };
        let g = guard.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if !g.armed.load(Ordering::Relaxed) {
                return Authorization::Allow;
            }
            match judge(policy, &ctx) {
                Ok(()) => Authorization::Allow,
                Err(reason) => {
                    *g.denial.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                    Authorization::Deny
                }
            }
        }))?;
        Ok(guard)
    }

    /// Enforces the plugin policy until the returned value is dropped.
    pub fn arm(&self) -> Armed<'_> {
        self.armed.store(true, Ordering::Relaxed);
        self.denial.lock().unwrap_or_else(|p| p.into_inner()).take();
        Armed(self)
    }

    /// The reason for the last denial, if the last statement was denied.
    pub fn take_denial(&self) -> Option<String> {
        self.denial.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// While alive, the plugin policy is enforced.
pub struct Armed<'a>(&'a SqlGuard);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.armed.store(false, Ordering::Relaxed);
    }
}

/// Refuses statements the authorizer never sees. `VACUUM` (and
/// `VACUUM INTO 'file'`, which writes a file) is not reported to the
/// authorizer, so it is refused by its leading keyword.
pub fn precheck(sql: &str) -> Result<(), String> {
    let first = leading_keyword(sql);
    if first.eq_ignore_ascii_case("vacuum") {
        return Err("VACUUM is not allowed: the host manages the database file".into());
    }
    Ok(())
}

/// The first keyword of `sql`, skipping white space and comments.
fn leading_keyword(sql: &str) -> &str {
    let mut s = sql;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let end = s.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(s.len());
    &s[..end]
}

fn is_host_table(name: &str) -> bool {
    name.len() >= HOST_TABLE_PREFIX.len()
        && name[..HOST_TABLE_PREFIX.len()].eq_ignore_ascii_case(HOST_TABLE_PREFIX)
}

fn judge(policy: Policy, ctx: &AuthContext<'_>) -> Result<(), String> {
    use AuthAction as A;
    let host_table = |t: &str| {
        if is_host_table(t) {
            Err(format!("table {t} belongs to the host; plugins cannot read or change it"))
        } else {
            Ok(())
        }
    };
    match (policy, &ctx.action) {
        (_, A::Attach { .. } | A::Detach { .. }) => {
            Err("ATTACH and DETACH are not allowed: a plugin can only use its own database".into())
        }
        (_, A::Transaction { .. } | A::Savepoint { .. }) => {
            Err("transaction control is not allowed: the host runs each batch in one transaction".into())
        }
        (_, A::Function { function_name }) if function_name.eq_ignore_ascii_case("load_extension") => {
            Err("loading extensions is not allowed".into())
        }
        (_, A::Pragma { pragma_name, pragma_value }) => {
            let is = |list: &[&str]| list.iter().any(|p| p.eq_ignore_ascii_case(pragma_name));
            if is(SCHEMA_PRAGMAS) || (is(READABLE_PRAGMAS) && pragma_value.is_none()) {
                Ok(())
            } else {
                Err(format!("PRAGMA {pragma_name} is not allowed: only reading schema information is"))
            }
        }
        (Policy::ReadOnly, A::Read { .. } | A::Select | A::Function { .. } | A::Recursive) => Ok(()),
        (Policy::ReadOnly, _) => Err("only read-only statements (SELECT) are allowed here".into()),
        (Policy::Plugin, A::Read { table_name, .. }) => host_table(table_name),
        (
            Policy::Plugin,
            A::Insert { table_name } | A::Update { table_name, .. } | A::Delete { table_name },
        ) => host_table(table_name),
        (
            Policy::Plugin,
            A::CreateTable { table_name }
            | A::CreateTempTable { table_name }
            | A::DropTable { table_name }
            | A::DropTempTable { table_name }
            | A::AlterTable { table_name, .. }
            | A::CreateIndex { table_name, .. }
            | A::CreateTempIndex { table_name, .. }
            | A::DropIndex { table_name, .. }
            | A::DropTempIndex { table_name, .. }
            | A::CreateTrigger { table_name, .. }
            | A::CreateTempTrigger { table_name, .. }
            | A::DropTrigger { table_name, .. }
            | A::DropTempTrigger { table_name, .. }
            | A::CreateVtable { table_name, .. }
            | A::DropVtable { table_name, .. }
            | A::Analyze { table_name },
        ) => host_table(table_name),
        (Policy::Plugin, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin_conn() -> (Connection, SqlGuard) {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE refract_checkpoint (p INTEGER); CREATE TABLE t (x INTEGER);").unwrap();
        let g = SqlGuard::install(&mut c, Policy::Plugin).unwrap();
        (c, g)
    }

    fn refused(sql: &str) -> String {
        let (c, g) = plugin_conn();
        let _armed = g.arm();
        if let Err(reason) = precheck(sql) {
            return reason;
        }
        let err = c.execute_batch(sql).expect_err(sql);
        g.take_denial().unwrap_or_else(|| panic!("{sql}: failed without a denial: {err}"))
    }

    #[test]
    fn plugin_policy_refuses_escapes() {
        assert!(refused("ATTACH 'other.db' AS o").contains("ATTACH"));
        assert!(refused("BEGIN").contains("transaction"));
        assert!(refused("SAVEPOINT s").contains("transaction"));
        assert!(refused("PRAGMA journal_mode = DELETE").contains("journal_mode"));
        assert!(refused("PRAGMA writable_schema = ON").contains("writable_schema"));
        assert!(refused("/* hi */ vacuum into 'x.db'").contains("VACUUM"));
        assert!(refused("DROP TABLE refract_checkpoint").contains("refract_checkpoint"));
        assert!(refused("SELECT * FROM REFRACT_CHECKPOINT").contains("belongs to the host"));
        assert!(refused("SELECT load_extension('x')").contains("extensions"));
    }

    #[test]
    fn plugin_policy_allows_own_tables_and_only_when_armed() {
        let (c, g) = plugin_conn();
        {
            let _armed = g.arm();
            c.execute_batch("INSERT INTO t VALUES (1); CREATE TABLE u (y); PRAGMA table_info(t);").unwrap();
        }
        // Disarmed: the host may write its own bookkeeping.
        c.execute("INSERT INTO refract_checkpoint VALUES (1)", []).unwrap();
    }

    #[test]
    fn read_only_policy_refuses_writes() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let g = SqlGuard::install(&mut c, Policy::ReadOnly).unwrap();
        c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap();
        assert!(c.execute("DELETE FROM t", []).is_err());
        assert!(g.take_denial().unwrap().contains("read-only"));
    }
}
