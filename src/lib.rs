#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]

#[macro_use]
extern crate futures;
#[macro_use]
extern crate log;

mod accept_error;
mod bind;
mod ext;
mod limits;
mod listen;
mod sleep_on_error;
mod stats;
mod take_until;
#[cfg(feature = "tokio1")]
pub mod tokio1;

pub use crate::bind::BindMany;
pub use crate::ext::ListenExt;
pub use crate::listen::Listen;
pub use crate::sleep_on_error::SleepOnError;
pub use crate::stats::{AcceptStats, ListenStats};
pub use crate::take_until::TakeUntil;
