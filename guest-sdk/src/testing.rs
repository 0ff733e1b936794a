//! Native test helpers.
//!
//! - Command handlers: `given(events).when(command).then(expected)` and
//!   `.then_rejected(code)`, through the same serde round trip as in the
//!   host.
//! - Projections: [`ProjectionTest`] runs one against an in-memory database.
//! - Reactors: [`ReactorTest`] runs one against an in-memory database and
//!   returns the commands it sends.
//!
//! ```
//! # use refract_sdk::{Db, Description, Event, Projection, Result};
//! # struct Counter;
//! # impl Projection for Counter {
//! #     fn describe() -> Description {
//! #         Description::new("counter", "1").migration("CREATE TABLE n (id INTEGER PRIMARY KEY, c INTEGER)")
//! #     }
//! #     fn apply(db: &Db, _e: &Event) -> Result<()> {
//! #         db.execute("INSERT INTO n (id, c) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET c = c + 1", &[])?;
//! #         Ok(())
//! #     }
//! # }
//! use refract_sdk::testing::{event, ProjectionTest};
//!
//! let t = ProjectionTest::<Counter>::new();
//! t.apply(&[event(1, "s-1", 1, "Anything", serde_json::json!({}))]).unwrap();
//! let rows = t.db().query("SELECT c FROM n", &[]).unwrap();
//! assert_eq!(rows.get::<i64>(0, "c").unwrap(), 1);
//! ```

#[cfg(not(target_family = "wasm"))]
mod native {
    use std::marker::PhantomData;

    use crate::projection::apply_all;
    use crate::{Db, Error, Event, Projection, Result};

    /// A fresh in-memory database with `migrations` of plugin `name` run.
    ///
    /// # Panics
    /// When a migration fails: that is the test's failure.
    pub(super) fn migrated(name: &str, migrations: &[String]) -> Db {
        let db = Db::open_in_memory().expect("in-memory SQLite");
        for (i, m) in migrations.iter().enumerate() {
            if let Err(e) = db.execute_batch(m) {
                panic!("migration {} of {name} failed: {}", i + 1, crate::sql::describe(&e));
            }
        }
        db
    }

    /// A projection with its migrations applied to a fresh in-memory database.
    pub struct ProjectionTest<P> {
        db: Db,
        _p: PhantomData<P>,
    }

    impl<P: Projection> ProjectionTest<P> {
        /// Runs every migration of `P` on a new in-memory database.
        ///
        /// # Panics
        /// When a migration fails: that is the test's failure.
        pub fn new() -> Self {
            let d = P::describe();
            Self { db: migrated(&d.name, &d.migrations), _p: PhantomData }
        }

        /// Applies a batch the way the host does: in one transaction, rolled
        /// back entirely when any event fails. Events whose type the
        /// projection did not ask for are skipped, as the host would.
        pub fn apply(&self, events: &[Event]) -> Result<()> {
            let wanted = P::describe().event_types;
            let batch: Vec<Event> = events
                .iter()
                .filter(|e| wanted.is_empty() || wanted.contains(&e.event_type))
                .cloned()
                .collect();
            self.db.execute_batch("BEGIN")?;
            match apply_all::<P>(&self.db, &batch) {
                Ok(()) => Ok(self.db.execute_batch("COMMIT")?),
                Err(e) => {
                    self.db.execute_batch("ROLLBACK")?;
                    Err(Error::new(format!("event {}: {}", e.position, e.message)))
                }
            }
        }

        /// The database, to query what the projection wrote.
        pub fn db(&self) -> &Db {
            &self.db
        }
    }

    impl<P: Projection> Default for ProjectionTest<P> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// Builds an event for a test; `recorded_at` is 0 and metadata `{}`.
    pub fn event(
        position: u64,
        stream_id: &str,
        stream_version: u64,
        event_type: &str,
        data: serde_json::Value,
    ) -> Event {
        Event {
            position,
            stream_id: stream_id.to_owned(),
            stream_version,
            event_type: event_type.to_owned(),
            data: data.to_string(),
            metadata: "{}".to_owned(),
            recorded_at: 0,
        }
    }
}

#[cfg(not(target_family = "wasm"))]
pub use native::{ProjectionTest, event};

#[cfg(not(target_family = "wasm"))]
pub use reactor::ReactorTest;

#[cfg(not(target_family = "wasm"))]
mod reactor {
    use std::marker::PhantomData;

    use super::native::migrated;
    use crate::reactor::react_all;
    use crate::{Command, Db, Error, Event, Reactor, Result};

    /// A reactor with its migrations applied to a fresh in-memory
    /// database: feed it events, check the commands it sends and what it
    /// remembers.
    ///
    /// ```
    /// # use refract_sdk::{Commands, Db, Description, Event, Reactor, Result};
    /// # struct Echo;
    /// # impl Reactor for Echo {
    /// #     fn describe() -> Description { Description::new("echo", "1") }
    /// #     fn react(_db: &Db, e: &Event, out: &mut Commands) -> Result<()> {
    /// #         out.send_json("h", &e.stream_id, "Ping", &serde_json::json!({}))
    /// #     }
    /// # }
    /// use refract_sdk::testing::{event, ReactorTest};
    ///
    /// let t = ReactorTest::<Echo>::new();
    /// let sent = t.react(&[event(1, "s-1", 1, "Anything", serde_json::json!({}))]).unwrap();
    /// assert_eq!((sent[0].command_type.as_str(), sent[0].position), ("Ping", 1));
    /// ```
    pub struct ReactorTest<R> {
        db: Db,
        _r: PhantomData<R>,
    }

    impl<R: Reactor> ReactorTest<R> {
        /// Runs every migration of `R` on a new in-memory database.
        ///
        /// # Panics
        /// When a migration fails: that is the test's failure.
        pub fn new() -> Self {
            let d = R::describe();
            Self { db: migrated(&d.name, &d.migrations), _r: PhantomData }
        }

        /// Reacts to a batch the way the host does: in one transaction,
        /// rolled back (and nothing sent) when any event fails; events of
        /// types the reactor did not ask for are skipped. The commands sent.
        pub fn react(&self, events: &[Event]) -> Result<Vec<Command>> {
            let wanted = R::describe().event_types;
            let batch: Vec<Event> = events
                .iter()
                .filter(|e| wanted.is_empty() || wanted.contains(&e.event_type))
                .cloned()
                .collect();
            self.db.execute_batch("BEGIN")?;
            match react_all::<R>(&self.db, &batch) {
                Ok(sent) => {
                    self.db.execute_batch("COMMIT")?;
                    Ok(sent)
                }
                Err(e) => {
                    self.db.execute_batch("ROLLBACK")?;
                    Err(Error::new(format!("event {}: {}", e.position, e.message)))
                }
            }
        }

        /// The database, to query what the reactor remembers.
        pub fn db(&self) -> &Db {
            &self.db
        }
    }

    impl<R: Reactor> Default for ReactorTest<R> {
        fn default() -> Self {
            Self::new()
        }
    }
}

#[cfg(not(target_family = "wasm"))]
pub use decider::{Given, Then, given};

#[cfg(not(target_family = "wasm"))]
mod decider {
    use std::marker::PhantomData;

    use serde::Serialize;

    use crate::handler::{run, untagged};
    use crate::{CommandHandler, Event, Rejection};

    /// A stream history, in events of `H`.
    pub struct Given<H> {
        history: Vec<Event>,
        _h: PhantomData<H>,
    }

    /// The outcome of a command, to check.
    pub struct Then<H> {
        outcome: Result<Vec<(String, String)>, Rejection>,
        _h: PhantomData<H>,
    }

    /// Starts a handler test with the stream's past events (oldest first).
    ///
    /// # Panics
    /// When an event does not serialize as `{"type", "data"}`.
    #[track_caller]
    pub fn given<H: CommandHandler>(events: impl IntoIterator<Item = H::Event>) -> Given<H> {
        let history = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let (event_type, data) = untagged(&e).unwrap_or_else(|m| panic!("{m}"));
                let v = i as u64 + 1;
                super::event(
                    v,
                    "test-stream",
                    v,
                    &event_type,
                    serde_json::from_str(&data).unwrap_or_default(),
                )
            })
            .collect();
        Given { history, _h: PhantomData }
    }

    impl<H: CommandHandler> Given<H>
    where
        H::Command: Serialize,
    {
        /// Decides on `command` given the history.
        ///
        /// # Panics
        /// When the command does not serialize as `{"type", "data"}`.
        #[track_caller]
        pub fn when(self, command: H::Command) -> Then<H> {
            let (kind, data) = untagged(&command).unwrap_or_else(|m| panic!("{m}"));
            Then { outcome: run::<H>(&kind, &data, &self.history), _h: PhantomData }
        }
    }

    fn values(events: &[(String, String)]) -> Vec<serde_json::Value> {
        events
            .iter()
            .map(|(t, d)| serde_json::json!({ "type": t, "data": serde_json::from_str::<serde_json::Value>(d).ok() }))
            .collect()
    }

    impl<H: CommandHandler> Then<H> {
        /// Asserts the command produced exactly `expected`, in order.
        ///
        /// # Panics
        /// When it was rejected or produced other events.
        #[track_caller]
        pub fn then(self, expected: impl IntoIterator<Item = H::Event>) {
            let expected: Vec<(String, String)> =
                expected.into_iter().map(|e| untagged(&e).unwrap_or_else(|m| panic!("{m}"))).collect();
            match self.outcome {
                Ok(got) => assert_eq!(values(&got), values(&expected), "events differ"),
                Err(r) => panic!("expected events, got rejection {}: {}", r.code, r.message),
            }
        }

        /// Asserts the command was rejected with `code`.
        ///
        /// # Panics
        /// When it was accepted or rejected with another code.
        #[track_caller]
        pub fn then_rejected(self, code: &str) {
            match self.outcome {
                Ok(got) => panic!("expected rejection {code}, got events {:?}", values(&got)),
                Err(r) => assert_eq!(r.code, code, "rejected with another code: {}", r.message),
            }
        }
    }
}
