//! One worker's access log buffer and the handle it is made from: lines are formatted here, on
//! the worker, and only whole buffers cross to the writer thread.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::mem;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TrySendError};

use super::format;
use super::writer::Shared;
use super::Entry;
use crate::config::LogFormat;

/// A buffer is handed over once it holds this much: large enough that a busy core sends a few
/// buffers a second rather than thousands (one channel operation per ~300 lines of ~200 bytes),
/// small enough that a full channel of them (see `writer::CHANNEL_CAPACITY`) stays at 16 MiB.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Capacity of a new buffer: the flush threshold plus room for the line that crosses it, so a
/// buffer does not grow in ordinary use (a line is ~200–600 bytes; SNI is at most 255 bytes, an
/// error message a few hundred).
pub(crate) const BUFFER_CAPACITY: usize = FLUSH_AT + 4 * 1024;

/// How often [`LocalLog::run_flusher`] hands a partly filled buffer over: how late a line may
/// appear on a quiet core.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// A handle for one worker (`Send + Clone`); the worker turns it into its local buffer with
/// [`Sink::local`].
#[derive(Clone)]
pub struct Sink {
    /// Filled buffers, to the writer thread.
    pub(crate) full: Sender<Vec<u8>>,
    /// Emptied buffers, back from the writer thread.
    pub(crate) free: Receiver<Vec<u8>>,
    pub(crate) shared: Arc<Shared>,
}

impl Sink {
    /// This worker's buffer (call on the worker thread).
    pub fn local(self, format: LogFormat) -> LocalLog {
        let buf = self.take_free();
        LocalLog {
            format,
            buf: RefCell::new(buf),
            lines: Cell::new(0),
            sink: self,
            _worker: PhantomData,
        }
    }

    /// A recycled buffer if the writer has returned one, else a new one.
    fn take_free(&self) -> Vec<u8> {
        self.free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER_CAPACITY))
    }
}

/// One worker's access log buffer (`!Send`, lives in an `Rc` on the worker).
///
/// Dropping it flushes what it holds, so a worker that exits loses no lines as long as the
/// writer is still running.
pub struct LocalLog {
    format: LogFormat,
    buf: RefCell<Vec<u8>>,
    /// Lines in `buf`: what [`AccessLogWriter::dropped`](super::AccessLogWriter::dropped) grows by
    /// if the buffer cannot be handed over.
    lines: Cell<u64>,
    sink: Sink,
    /// Belongs to the worker that made it: its flusher runs on that worker's runtime.
    _worker: PhantomData<Rc<()>>,
}

impl LocalLog {
    /// Appends one line; never blocks, never does I/O; allocates only if the buffer must grow.
    pub fn write(&self, entry: &Entry<'_>) {
        let len = {
            let mut buf = self.buf.borrow_mut();
            let start = buf.len();
            if format::write_line(&mut buf, self.format, entry).is_ok() {
                self.lines.set(self.lines.get() + 1);
            } else {
                // Cannot happen when writing into a Vec; if it did, leave no half line behind.
                buf.truncate(start);
                self.sink.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            buf.len()
        };
        if len >= FLUSH_AT {
            self.flush();
        }
    }

    /// Hands the buffer to the writer thread if it holds anything (or is over 64 KiB, called by
    /// write itself).
    ///
    /// Never blocks: if the writer's channel is full (or the writer has stopped), the buffer's
    /// lines are counted as dropped and the buffer is emptied and reused.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let lines = self.lines.replace(0);
        match self.sink.full.try_send(mem::take(&mut *buf)) {
            Ok(()) => *buf = self.sink.take_free(),
            Err(TrySendError::Full(mut back) | TrySendError::Disconnected(mut back)) => {
                self.sink.shared.dropped.fetch_add(lines, Ordering::Relaxed);
                back.clear();
                *buf = back;
            }
        }
    }

    /// Runs forever: flush every 100 ms. The worker spawns it on its runtime (its timers are the
    /// ring's). After a stall, one flush is enough: the ticker does not catch up.
    pub async fn run_flusher(self: Rc<Self>) {
        let mut tick = crate::net::time::Ticker::new(FLUSH_INTERVAL);
        loop {
            tick.tick().await;
            self.flush();
        }
    }
}

impl Drop for LocalLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::time::sleep;
    use crossbeam::channel::bounded;
    use std::time::Instant;

    /// A sink with no writer thread: the test plays the writer through the returned channel ends.
    fn sink(capacity: usize) -> (Sink, Receiver<Vec<u8>>, Sender<Vec<u8>>) {
        let (full_tx, full_rx) = bounded(capacity);
        let (free_tx, free_rx) = bounded(capacity);
        let sink = Sink {
            full: full_tx,
            free: free_rx,
            shared: Arc::new(Shared::default()),
        };
        (sink, full_rx, free_tx)
    }

    use crate::access_log::test_entry as entry;

    fn dropped(log: &LocalLog) -> u64 {
        log.sink.shared.dropped.load(Ordering::Relaxed)
    }

    #[test]
    fn sink_is_send_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Sink>();
    }

    #[test]
    fn flush_hands_over_whole_lines_and_skips_empty_buffers() {
        let (sink, full, _free) = sink(4);
        let log = sink.local(LogFormat::Logfmt);
        log.flush();
        assert!(full.try_recv().is_err(), "an empty buffer is not sent");
        log.write(&entry(1));
        log.write(&entry(2));
        log.flush();
        let buf = full.try_recv().expect("a buffer");
        let text = String::from_utf8(buf).expect("UTF-8");
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("end=client_close\n"));
        assert!(log.buf.borrow().is_empty());
        assert_eq!(log.lines.get(), 0);
    }

    #[test]
    fn full_channel_counts_dropped_lines_and_never_blocks() {
        let (sink, full, _free) = sink(1);
        let log = sink.local(LogFormat::Json);
        log.write(&entry(1));
        log.flush(); // fills the channel
        for n in 0..3 {
            log.write(&entry(n));
        }
        log.flush(); // channel full: 3 lines dropped, the buffer is reused
        assert_eq!(dropped(&log), 3);
        assert!(log.buf.borrow().is_empty());
        assert!(log.buf.borrow().capacity() >= BUFFER_CAPACITY);

        // The writer catches up: the next buffer goes through, nothing more is dropped.
        let first = full.try_recv().expect("the first buffer");
        assert_eq!(first.iter().filter(|&&b| b == b'\n').count(), 1);
        log.write(&entry(9));
        log.flush();
        assert_eq!(dropped(&log), 3);
        assert!(full.try_recv().is_ok());
    }

    #[test]
    fn stopped_writer_counts_dropped_lines() {
        let (sink, full, free) = sink(4);
        let log = sink.local(LogFormat::Logfmt);
        drop((full, free));
        log.write(&entry(1));
        log.flush();
        assert_eq!(dropped(&log), 1);
    }

    #[test]
    fn write_flushes_at_the_threshold() {
        let (sink, full, _free) = sink(64);
        let log = sink.local(LogFormat::Logfmt);
        let mut written = 0;
        while full.is_empty() {
            log.write(&entry(written));
            written += 1;
            assert!(written < 10_000, "never flushed");
        }
        let buf = full.try_recv().expect("a buffer");
        assert!(
            buf.len() >= FLUSH_AT && buf.len() < BUFFER_CAPACITY,
            "{}",
            buf.len()
        );
        assert_eq!(buf.capacity(), BUFFER_CAPACITY, "the buffer did not grow");
        assert!(log.buf.borrow().is_empty());
    }

    /// Buffers go round: the worker's next buffer is the one the writer sent back, so steady state
    /// allocates nothing. Fails if flush allocates instead of taking from the free channel.
    #[test]
    fn buffers_are_recycled() {
        let (sink, full, free) = sink(4);
        let log = sink.local(LogFormat::Logfmt);
        let first = log.buf.borrow().as_ptr();
        log.write(&entry(1));
        log.flush();

        // Play the writer: write out, empty, send back.
        let mut buf = full.try_recv().expect("a buffer");
        assert_eq!(buf.as_ptr(), first);
        buf.clear();
        free.try_send(buf).expect("room");

        let second = log.buf.borrow().as_ptr();
        log.write(&entry(2));
        log.flush();
        assert_eq!(
            log.buf.borrow().as_ptr(),
            first,
            "the returned buffer is reused"
        );
        let sent = full.try_recv().expect("a buffer");
        assert_eq!(sent.as_ptr(), second);
    }

    #[test]
    fn dropping_flushes() {
        let (sink, full, _free) = sink(4);
        let log = sink.local(LogFormat::Logfmt);
        log.write(&entry(1));
        drop(log);
        assert!(full.try_recv().is_ok());
    }

    /// A line written on a quiet core (the flusher already past its first tick) is handed over
    /// within about one interval. Fails if the flusher stops after its first tick or never runs.
    #[test]
    fn flusher_hands_over_within_its_interval() {
        let (sink, full, _free) = sink(4);
        let log = Rc::new(sink.local(LogFormat::Logfmt));
        let (waited, _) = crate::net::ring::block_on(async {
            let flusher = log.clone().run_flusher();
            let test = async {
                // Let the flusher take its first tick, then write.
                sleep(FLUSH_INTERVAL + Duration::from_millis(20)).await;
                log.write(&entry(1));
                let written = Instant::now();
                while full.is_empty() {
                    sleep(Duration::from_millis(2)).await;
                }
                written.elapsed()
            };
            tokio::select! {
                _ = flusher => unreachable!("the flusher runs forever"),
                waited = test => waited,
                _ = sleep(Duration::from_secs(5)) => panic!("not flushed in 5 s"),
            }
        })
        .expect("ring");
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        let buf = full.try_recv().expect("a buffer");
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
