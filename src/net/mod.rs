//! Everything that touches io_uring (compio) and socket options (socket2) lives here, so that
//! swapping the io_uring runtime touches only this folder.
//!
//! - [`ring`]: one compio runtime per worker thread (`SINGLE_ISSUER`, `COOP_TASKRUN`), its tasks.
//! - [`time`]: sleeps, timeouts and tickers on the same ring.
//! - [`affinity`]: the CPUs this process may run on, and pinning a thread to one of them.
//! - [`buffers`]: per-core pools of large I/O buffers; idle connections hold only small ones.
//! - [`listener`]: `SO_REUSEPORT` listeners with an explicit backlog.
//! - [`recv`]: multishot receives into kernel-selected buffers, with back-pressure.
//! - [`connect`]: backend connects bounded by a timeout without leaking an in-flight operation.
//! - [`endpoint`]: what the relay needs from one end of a connection, plain or TLS.
//! - [`stream`]: the TCP stream type the proxy reads and writes with owned buffers.
//! - [`transport`]: what the TLS engine needs from a stream, for TCP and an in-memory pipe.

pub mod affinity;
pub mod buffers;
pub mod connect;
pub mod endpoint;
pub mod listener;
pub mod recv;
pub mod ring;
pub mod stream;
pub mod time;
pub mod transport;

pub use endpoint::Endpoint;
pub use stream::TcpStream;
pub use transport::Transport;
