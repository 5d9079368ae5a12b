//! A `BindMany`'s sockets from a `Handover` (`BindMany::handover`, both
//! stacks): the glue between the address set's `Source` hook and the
//! handover's decisions in `protocol.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};

use super::protocol::Handover;
use crate::bind::{Keep, Source};

impl Handover {
    /// The source of one `BindMany`'s sockets; [`ready`](Handover::ready)
    /// waits for its first address list.
    pub(crate) fn bind_many_source(&self) -> Box<dyn Source> {
        self.set_added();
        Box::new(FromHandover {
            handover: self.clone(),
            applied: AtomicBool::new(false),
        })
    }
}

struct FromHandover {
    handover: Handover,
    /// The set applied its first list (or ended, or is gone).
    applied: AtomicBool,
}

impl Source for FromHandover {
    fn listener(&self, requested: SocketAddr, backlog: u32) -> io::Result<(TcpListener, Keep)> {
        let (listener, kept) = self.handover.set_listener(requested, backlog)?;
        Ok((listener, Box::new(kept)))
    }

    fn applied(&self) {
        if !self.applied.swap(true, Ordering::AcqRel) {
            self.handover.set_applied();
        }
    }
}

impl Drop for FromHandover {
    fn drop(&mut self) {
        self.applied();
    }
}
