//! The writer thread: the only code that touches the access log's file (or stdout). It writes
//! the buffers the workers hand over, sends them back emptied, reopens the file on request and
//! survives write errors (a full disk, see `output.rs`) by dropping lines until writing works
//! again.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{bounded, select, Receiver, Sender};

use super::local::{Sink, BUFFER_CAPACITY};
use super::output::{Output, Target};
use crate::config::AccessLog;

/// Filled buffers that may wait for the writer: at 64 KiB each, 16 MiB, or about 80 000 lines —
/// a second of a very busy box — to ride out a slow disk before lines are dropped. The same bound
/// holds the emptied buffers kept for reuse.
pub(crate) const CHANNEL_CAPACITY: usize = 256;

/// A buffer that an outsized line grew past this is freed rather than kept for reuse, so one odd
/// line does not pin memory for good.
const MAX_RECYCLED_CAPACITY: usize = 2 * BUFFER_CAPACITY;

/// State shared by the workers' buffers, the writer thread and its owner.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Lines lost: channel full or writer stopped (counted by the workers), or a failed write
    /// (counted by the writer).
    pub(crate) dropped: AtomicU64,
    /// Set by [`AccessLogWriter::reopen`], cleared by the thread when it reopens.
    reopen: AtomicBool,
    /// Set by [`AccessLogWriter::stop`] or drop: drain, flush, exit.
    stop: AtomicBool,
}

/// The writer thread: owns the file (or stdout), receives filled buffers from the workers.
pub struct AccessLogWriter {
    sink: Sink,
    /// Wakes the thread for `reopen` and `stop` (capacity 1: one pending wake is enough, the
    /// thread reads the flags when it wakes).
    wake: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLogWriter {
    /// Opens the target (file in append mode, created 0640 if missing) and starts the thread.
    ///
    /// The error names the file that could not be opened.
    pub fn start(config: &AccessLog) -> io::Result<Self> {
        let target = Target::open(&config.target)?;
        let (full_tx, full_rx) = bounded(CHANNEL_CAPACITY);
        let (free_tx, free_rx) = bounded(CHANNEL_CAPACITY);
        let (wake_tx, wake_rx) = bounded(1);
        let shared = Arc::new(Shared::default());
        let thread = Thread {
            output: Output::new(target, shared.clone()),
            full: full_rx,
            free: free_tx,
            wake: wake_rx,
            shared: shared.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || thread.run())?;
        Ok(Self {
            sink: Sink {
                full: full_tx,
                free: free_rx,
                shared,
            },
            wake: wake_tx,
            thread: Some(handle),
        })
    }

    /// A handle for one worker (Send + Clone); the worker turns it into its local buffer.
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Asks the thread to reopen the file (SIGUSR1, after logrotate moved it); no-op for stdout.
    ///
    /// Returns at once; the thread reopens as soon as it wakes, and before it writes any buffer
    /// handed over after this call. If the file cannot be opened the thread logs why and keeps
    /// writing to the old one.
    pub fn reopen(&self) {
        self.sink.shared.reopen.store(true, Ordering::Release);
        // Full means a wake is already pending, which will see the flag.
        let _ = self.wake.try_send(());
    }

    /// Lines dropped because the writer could not keep up (the workers never block).
    ///
    /// Also counts lines lost to failed writes (disk full) and lines flushed after the writer
    /// stopped.
    pub fn dropped(&self) -> u64 {
        self.sink.shared.dropped.load(Ordering::Relaxed)
    }

    /// Flushes everything already handed over and joins the thread.
    ///
    /// Lines still in a worker's [`LocalLog`](super::LocalLog) are not handed over: drop the
    /// workers' logs (or call their `flush`) first.
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the access log writer thread panicked; lines may be lost");
            }
        }
    }

    fn signal_stop(&self) {
        self.sink.shared.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
    }
}

impl Drop for AccessLogWriter {
    /// Without [`stop`](Self::stop): the thread still drains and flushes, but nobody waits for it.
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// The thread's state.
struct Thread {
    output: Output<Target>,
    full: Receiver<Vec<u8>>,
    free: Sender<Vec<u8>>,
    wake: Receiver<()>,
    shared: Arc<Shared>,
}

impl Thread {
    fn run(mut self) {
        loop {
            select! {
                recv(self.full) -> buf => match buf {
                    Ok(buf) => self.batch(buf),
                    // Every sink is gone, the writer's own included: it was dropped.
                    Err(_) => break,
                },
                recv(self.wake) -> wake => if wake.is_err() {
                    // The AccessLogWriter is gone (it set `stop` first).
                    break;
                },
            }
            self.reopen_if_asked();
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
        }
        while let Ok(buf) = self.full.try_recv() {
            self.write_buffer(buf);
        }
        self.output.flush();
    }

    /// Writes `first` and whatever else is waiting (up to a channel's worth, so the flags are
    /// read now and then even under constant load), then flushes once.
    fn batch(&mut self, first: Vec<u8>) {
        self.write_buffer(first);
        for _ in 1..CHANNEL_CAPACITY {
            match self.full.try_recv() {
                Ok(buf) => self.write_buffer(buf),
                Err(_) => break,
            }
        }
        self.output.flush();
    }

    fn write_buffer(&mut self, mut buf: Vec<u8>) {
        // Checked per buffer: a buffer sent after `reopen()` returned goes to the new file.
        self.reopen_if_asked();
        self.output.write_lines(&buf);
        if buf.capacity() <= MAX_RECYCLED_CAPACITY {
            buf.clear();
            // Free list full (or every worker gone): let this one go.
            let _ = self.free.try_send(buf);
        }
    }

    fn reopen_if_asked(&mut self) {
        if !self.shared.reopen.swap(false, Ordering::AcqRel)
            || matches!(self.output.out, Target::Stdout(_))
        {
            return;
        }
        self.output.flush();
        match self.output.out.reopen() {
            Ok(()) => {
                self.output.reopened();
                tracing::info!(target_file = %self.output.out, "access log reopened");
            }
            Err(error) => {
                tracing::error!(%error, "cannot reopen the access log; still writing to the old file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::output::FILE_MODE;
    use crate::config::LogFormat;
    use crate::config::LogTarget;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use crate::access_log::test_entry as entry;

    fn file_config(path: &Path, format: LogFormat) -> AccessLog {
        AccessLog {
            target: LogTarget::File(path.to_owned()),
            format,
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read the log")
    }

    /// Waits (with a deadline) until `path` holds `lines` lines.
    fn wait_for_lines(path: &Path, lines: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while read(path).lines().count() < lines {
            assert!(
                Instant::now() < deadline,
                "the writer did not write within 5 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn writes_to_a_new_file_with_mode_0640() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let writer = AccessLogWriter::start(&file_config(&path, LogFormat::Json)).expect("start");
        let log = writer.sink().local(LogFormat::Json);
        log.write(&entry(7));
        drop(log);
        writer.stop();
        let text = read(&path);
        let v: serde_json::Value = serde_json::from_str(&text).expect("one JSON line");
        assert_eq!(v["bytes_in"], 7);
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777 & !FILE_MODE, 0, "mode {mode:o}");
    }

    #[test]
    fn appends_to_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, "earlier\n").expect("write");
        let writer = AccessLogWriter::start(&file_config(&path, LogFormat::Logfmt)).expect("start");
        let log = writer.sink().local(LogFormat::Logfmt);
        log.write(&entry(1));
        drop(log);
        writer.stop();
        let text = read(&path);
        assert!(text.starts_with("earlier\ntime="), "{text}");
    }

    #[test]
    fn start_names_the_file_it_cannot_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing-dir").join("access.log");
        let err = AccessLogWriter::start(&file_config(&path, LogFormat::Logfmt))
            .err()
            .expect("an error");
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }

    /// Everything handed over before `stop` is in the file, from several workers at once.
    #[test]
    fn stop_drains_every_handed_over_buffer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let writer = AccessLogWriter::start(&file_config(&path, LogFormat::Logfmt)).expect("start");
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let sink = writer.sink();
                std::thread::spawn(move || {
                    let log = sink.local(LogFormat::Logfmt);
                    // 50 buffers per worker, 200 in all: below the channel's capacity, so
                    // nothing may be dropped even if the writer has not run yet.
                    for n in 0..500 {
                        log.write(&entry(n));
                        if n % 10 == 9 {
                            log.flush();
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        assert_eq!(writer.dropped(), 0);
        writer.stop();
        let text = read(&path);
        assert_eq!(text.lines().count(), 2000);
        assert!(text
            .lines()
            .all(|l| l.starts_with("time=") && l.ends_with("end=client_close")));
    }

    /// logrotate's sequence: rename the file, SIGUSR1, keep writing. Fails if `reopen` is ignored
    /// or applied after a buffer handed over later (the second line would land in the old file).
    #[test]
    fn reopen_after_rename_writes_to_the_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let writer = AccessLogWriter::start(&file_config(&path, LogFormat::Logfmt)).expect("start");
        let log = writer.sink().local(LogFormat::Logfmt);

        log.write(&entry(1));
        log.flush();
        wait_for_lines(&path, 1);
        std::fs::rename(&path, &rotated).expect("rename");
        writer.reopen();
        log.write(&entry(2));
        log.flush();
        drop(log);
        writer.stop();

        let old = read(&rotated);
        let new = read(&path);
        assert_eq!(old.lines().count(), 1);
        assert!(old.contains(" bytes_in=1 "), "{old}");
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains(" bytes_in=2 "), "{new}");
    }

    #[test]
    fn reopen_is_handled_while_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let writer = AccessLogWriter::start(&file_config(&path, LogFormat::Logfmt)).expect("start");
        std::fs::remove_file(&path).expect("remove");
        writer.reopen();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(Instant::now() < deadline, "not reopened within 5 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        writer.stop();
    }

    /// A full disk (`/dev/full` answers every write with ENOSPC): lines are counted as dropped,
    /// the thread lives on, and after the file is back (reopen) lines are written again.
    #[test]
    fn write_errors_drop_lines_and_the_writer_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let real = dir.path().join("real.log");
        symlink("/dev/full", &path).expect("symlink");
        let writer = AccessLogWriter::start(&file_config(&path, LogFormat::Logfmt)).expect("start");
        let log = writer.sink().local(LogFormat::Logfmt);

        for n in 0..3 {
            log.write(&entry(n));
        }
        log.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while writer.dropped() < 3 {
            assert!(
                Instant::now() < deadline,
                "write errors not counted within 5 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }

        std::fs::remove_file(&path).expect("remove the link");
        symlink(&real, &path).expect("symlink");
        writer.reopen();
        log.write(&entry(9));
        drop(log);
        writer.stop();

        let text = read(&real);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(" bytes_in=9 "), "{text}");
    }

    #[test]
    fn reopen_on_stdout_is_a_no_op() {
        let writer = AccessLogWriter::start(&AccessLog {
            target: LogTarget::Stdout,
            format: LogFormat::Logfmt,
        })
        .expect("start");
        writer.reopen();
        writer.reopen();
        assert_eq!(writer.dropped(), 0);
        writer.stop();
    }
}
