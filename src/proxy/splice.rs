//! The passthrough relay: both ends plain TCP, as lean as the ring allows.
//!
//! Per direction, one multishot receive stays armed on the source socket (`net::recv`): a
//! keep-alive request costs one completion to receive it and one vectored send to pass it on,
//! with no submission or poll re-armed per read, and an idle connection holds no buffer. What
//! arrives while a send is in flight is held (and counted, for back-pressure) and goes out in
//! the next send, so a burst costs one `sendmsg` per up to 16 chunks.
//!
//! Both directions are driven by the connection's own task (`join!`); closes are passed on as
//! in [`super::relay`]: a FIN becomes a half-close towards the other side, a reset or error
//! aborts both (a RST, never a FIN).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use super::registry::ConnGuard;
use super::relay::{Ending, RelayOutcome, Side};
use crate::net::recv::{Batch, Receiver};
use crate::net::TcpStream;

/// Copies both directions between `client` and `server` until both are closed. `client_rx` is
/// the client's receiver (it may have read `first` already: those bytes go to the server first).
pub async fn splice(
    client_rx: Receiver<'_>,
    first: Batch,
    server: &TcpStream,
    guard: &ConnGuard,
) -> RelayOutcome {
    let ending = Ending::default();
    let client = client_rx.stream();
    let (up, down) = tokio::join!(
        pump(
            client_rx,
            Side::Client,
            server,
            Side::Server,
            guard,
            &ending,
            first
        ),
        pump(
            Receiver::new(server),
            Side::Server,
            client,
            Side::Client,
            guard,
            &ending,
            Batch::new()
        ),
    );
    ending.outcome(up, down)
}

/// Copies what `rx` receives to `to` until a clean EOF or a failure; returns the bytes copied.
/// `batch` (bytes already received) is sent first.
async fn pump(
    mut rx: Receiver<'_>,
    from_side: Side,
    to: &TcpStream,
    to_side: Side,
    guard: &ConnGuard,
    ending: &Ending,
    mut batch: Batch,
) -> u64 {
    let from = rx.stream();
    let registry = guard.registry();
    let activity = guard.activity();
    let counters = guard.server_counters();
    let counter = counters.as_deref().map(|c| match from_side {
        Side::Client => &c.bytes_in,
        Side::Server => &c.bytes_out,
    });
    let mut copied: u64 = 0;
    loop {
        if batch.is_empty() {
            match rx.recv(&mut batch).await {
                Ok(true) => {}
                Ok(false) => {
                    ending.end_of_data(from, from_side, to, to_side).await;
                    return copied;
                }
                Err(e) => {
                    ending.fail(from_side, e, from, to);
                    return copied;
                }
            }
        }
        registry.touch(activity);
        let n = batch.len() as u64;
        // Send; what arrives meanwhile is held by the receiver (which stops its multishot
        // receive when too much is).
        let (res, mut sent) = {
            let mut send = pin!(to.write_batch(batch));
            poll_fn(|cx| {
                if let Poll::Ready(done) = send.as_mut().poll(cx) {
                    return Poll::Ready(done);
                }
                rx.poll_hold(cx);
                Poll::Pending
            })
            .await
        };
        sent.clear(&mut rx.bufs);
        batch = sent;
        if let Err(e) = res {
            ending.fail(to_side, e, from, to);
            return copied;
        }
        copied += n;
        if let Some(counter) = counter {
            counter.add(n);
        }
        registry.touch(activity);
    }
}
