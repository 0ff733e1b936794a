//! A hostile projection: tries to leave its own database and to take over
//! the host's transaction. Every attempt must be refused; it reports what
//! the host said, or `ESCAPED` if a statement got through.

use refract_sdk::{Db, Description, Error, Event, Projection, Result, SqlError};

/// The projection.
pub struct Escaper;

/// Statements no plugin may run.
pub const ATTEMPTS: &[&str] = &[
    "ATTACH DATABASE 'events.db' AS log",
    "ATTACH DATABASE '../events.db' AS log",
    "ATTACH DATABASE '../../events.db' AS log",
    "ATTACH DATABASE '../order-summary/CURRENT' AS other",
    "ATTACH DATABASE 'file:../order-summary?mode=ro' AS other",
    "DETACH DATABASE main",
    "PRAGMA main.journal_mode = OFF",
    "PRAGMA query_only = OFF",
    "PRAGMA foreign_keys = OFF",
    "RELEASE sneaky",
    "VACUUM",
    "DROP TABLE refract_dead_letters",
    "CREATE TRIGGER t AFTER UPDATE ON refract_meta BEGIN SELECT 1; END",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT sneaky",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA writable_schema = ON",
    "VACUUM INTO 'copy.db'",
    "DROP TABLE refract_meta",
    "UPDATE refract_meta SET position = 0",
    "SELECT load_extension('evil')",
];

impl Projection for Escaper {
    fn describe() -> Description {
        Description::new("escaper", "1").migration("CREATE TABLE loot (x TEXT)")
    }

    fn apply(db: &Db, _event: &Event) -> Result<()> {
        let mut report = Vec::new();
        for sql in ATTEMPTS {
            match db.execute(sql, &[]) {
                Ok(_) => report.push(format!("ESCAPED: {sql}")),
                Err(SqlError::Refused(m)) => report.push(format!("{sql} => refused: {m}")),
                Err(SqlError::Failed(m)) => report.push(format!("{sql} => failed: {m}")),
            }
        }
        Err(Error::new(report.join("\n")))
    }
}

refract_sdk::export_projection!(Escaper);
