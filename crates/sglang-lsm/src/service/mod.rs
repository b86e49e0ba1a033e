//! The node service: one process owns a store and serves every SGLang process on the node.
//!
//! A store directory belongs to one process (its `LOCK`). TP ranks, DP replicas, prefill and
//! decode workers on one node share one disk tier by talking to a [`Server`] over a Unix
//! socket through a [`Client`].
//!
//! - **Control** travels over the socket as small, versioned, length-bounded messages
//!   ([`wire`]). The handshake checks the protocol version and the peer's uid/gid
//!   (`SO_PEERCRED`, [`peer`]).
//! - **Payloads never cross the socket.** At the handshake the service creates a shared
//!   memory arena per connection (a sealed memfd passed with `SCM_RIGHTS`, [`arena`]). A put
//!   copies the pages into the arena once and the service writes them from there; a get is
//!   read by the service straight into the arena and copied out once. DESIGN.md compares
//!   this with client-side I/O and `process_vm_*` by measurement.
//! - **A client crash cannot corrupt or leak.** The service does every write itself, from
//!   memory it maps; a client that dies mid-call leaves either a whole, acknowledged put or
//!   none, and its arena goes when the connection does.
//! - **A service crash costs misses, not hangs.** Every client call has a timeout; a broken
//!   connection is dropped and the next call reconnects.

pub mod arena;
pub mod client;
mod connection;
pub mod peer;
pub mod server;
pub mod wire;

pub use client::{Client, ClientOptions};
pub use server::{Server, ServerOptions};

/// Version of the socket protocol; the handshake refuses a peer that speaks another.
/// 2: keys travel packed ([`wire::Keys`]) instead of as a list of byte lists.
pub const PROTOCOL_VERSION: u32 = 3;

/// First four bytes of every client hello, so a stray connection is told apart from an old
/// client.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SLSM");

/// The largest control message either side accepts. Keys are at most 1 KiB, so this holds a
/// batch of thousands of keys plus a long prefix; payloads never travel in messages.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Arena extents start on this boundary so O_DIRECT reads and writes can use them.
pub const EXTENT_ALIGN_BYTES: u64 = 4096;
