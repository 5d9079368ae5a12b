//! Restarts without losing a client (feature `handover`, Unix): listening
//! sockets taken from systemd or a predecessor ([`Inherited`]), and handed
//! over to a successor process ([`Handover`]). The protocol is in
//! `protocol.rs` (the decisions) and `successor.rs` (the other process),
//! free of either runtime; `task.rs` makes futures of it for both stacks;
//! `bind_many.rs` gives a `BindMany`'s addresses their sockets.

mod bind_many;
mod inherit;
mod protocol;
mod successor;
mod task;
#[cfg(test)]
mod tests;

pub use self::inherit::{Inherited, Origin};
pub use self::protocol::{Handover, HandoverError, Successor};
pub use self::task::{HandingOver, ShutdownSignal};
