//! Reading the log in batches, for a projection's runner and for `verify`:
//! each reader holds a source of its own (its own connection), which it may
//! use from a helper thread to read the next batch while the current one
//! is applied.

use super::types::ReadError;
use crate::plugin::Batch;

/// A read of at most `limit` events after `after`, up to `upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Read after this position.
    pub after: u64,
    /// Up to this position, inclusive.
    pub upto: u64,
    /// Most events.
    pub limit: usize,
}

/// Batches of the log, read on a connection of the source's own. Blocking:
/// call it from a thread of its own, not from the async runtime's workers.
pub trait BatchSource: Send {
    /// At most `ask.limit` events after `ask.after` up to `ask.upto`, in
    /// position order, only of `types` when given.
    fn read(&mut self, ask: Ask, types: Option<&[String]>) -> Result<Batch, ReadError>;
}
