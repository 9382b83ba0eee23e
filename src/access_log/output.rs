//! Where the writer thread's bytes go (stdout or a file opened for append) and what happens when
//! a write fails: the unwritten lines are counted as dropped, the error is logged once per run of
//! failures, and a line torn by a partial write is ended so the lines after it stay whole.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::writer::Shared;
use crate::config::LogTarget;

/// Permissions of a log file the writer creates (before the umask): the service's group may read
/// it, others may not — client addresses and names are personal data.
pub(crate) const FILE_MODE: u32 = 0o640;

/// The access log's destination.
pub(crate) enum Target {
    Stdout(io::Stdout),
    File { path: PathBuf, file: File },
}

impl Target {
    /// Opens `target`; the error names the file.
    pub(crate) fn open(target: &LogTarget) -> io::Result<Self> {
        Ok(match target {
            LogTarget::Stdout => Target::Stdout(io::stdout()),
            LogTarget::File(path) => Target::File {
                file: open_file(path)?,
                path: path.clone(),
            },
        })
    }

    /// Opens the file's path again (after logrotate moved it) and swaps it in; a no-op for
    /// stdout. On an error the old file stays.
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        if let Target::File { path, file } = self {
            *file = open_file(path)?;
        }
        Ok(())
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Stdout(_) => f.write_str("stdout"),
            Target::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Target::Stdout(out) => out.write(buf),
            Target::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stdout(out) => out.flush(),
            Target::File { file, .. } => file.flush(),
        }
    }
}

/// A destination plus what the writer remembers about failing to write to it.
pub(crate) struct Output<W> {
    pub(crate) out: W,
    /// Where lost lines are counted (`AccessLogWriter::dropped`).
    shared: Arc<Shared>,
    /// `Some(lines lost so far)` while writes fail: the error is logged once when this starts,
    /// the count when writing works again.
    failing: Option<u64>,
    /// A failed write stopped inside a line: the next write first ends that torn line.
    mid_line: bool,
}

impl<W: Write + fmt::Display> Output<W> {
    pub(crate) fn new(out: W, shared: Arc<Shared>) -> Self {
        Output {
            out,
            shared,
            failing: None,
            mid_line: false,
        }
    }

    /// `write_all` of whole lines that never fails: on an error the lines not written are
    /// counted as dropped, and the next call tries again.
    pub(crate) fn write_lines(&mut self, buf: &[u8]) {
        if self.mid_line {
            if let Err(e) = self.out.write_all(b"\n") {
                return self.failed(e, buf, 0);
            }
            self.mid_line = false;
        }
        let mut written = 0;
        while written < buf.len() {
            match self.out.write(&buf[written..]) {
                Ok(0) => return self.failed(io::ErrorKind::WriteZero.into(), buf, written),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.failed(e, buf, written),
            }
        }
        if let Some(lost) = self.failing.take() {
            tracing::warn!(target_file = %self.out, lost, "access log: writing again; lines were lost while writes failed");
        }
    }

    /// Flushes the destination; an error is handled like a failed write.
    pub(crate) fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.failed(e, &[], 0);
        }
    }

    /// The file was swapped for a new one: a torn line, if any, was in the old one.
    pub(crate) fn reopened(&mut self) {
        self.mid_line = false;
    }

    fn failed(&mut self, error: io::Error, buf: &[u8], written: usize) {
        let lost = buf[written..].iter().filter(|&&b| b == b'\n').count() as u64;
        if written > 0 {
            self.mid_line = buf[written - 1] != b'\n';
        }
        self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
        match &mut self.failing {
            Some(total) => *total += lost,
            None => {
                tracing::error!(target_file = %self.out, %error, "access log: cannot write; dropping lines until writing works again");
                self.failing = Some(lost);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` more bytes, at most `chunk` per call, then fails with ENOSPC.
    struct Disk {
        data: Vec<u8>,
        room: usize,
        chunk: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room).min(self.chunk);
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl fmt::Display for Disk {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("disk")
        }
    }

    fn output(room: usize) -> Output<Disk> {
        Output::new(
            Disk {
                data: Vec::new(),
                room,
                chunk: 3,
            },
            Arc::default(),
        )
    }

    fn dropped(o: &Output<Disk>) -> u64 {
        o.shared.dropped.load(Ordering::Relaxed)
    }

    #[test]
    fn short_writes_are_continued() {
        let mut o = output(usize::MAX);
        o.write_lines(b"one\ntwo\n");
        assert_eq!(o.out.data, b"one\ntwo\n");
        assert_eq!(dropped(&o), 0);
    }

    /// The disk fills inside the second line: it and the third are lost, and once there is room
    /// again the torn line is ended first. Fails if later lines would be glued to the torn one.
    #[test]
    fn a_torn_line_is_ended_before_the_next_write() {
        let mut o = output(6);
        o.write_lines(b"one\ntwo\nsix\n");
        assert_eq!(o.out.data, b"one\ntw");
        assert_eq!(dropped(&o), 2);
        assert_eq!(o.failing, Some(2));

        o.write_lines(b"ten\n"); // still full
        assert_eq!(dropped(&o), 3);
        assert_eq!(o.failing, Some(3));

        o.out.room = usize::MAX;
        o.write_lines(b"end\n");
        assert_eq!(o.out.data, b"one\ntw\nend\n");
        assert_eq!(dropped(&o), 3);
        assert_eq!(o.failing, None);
    }

    #[test]
    fn a_failure_at_a_line_boundary_needs_no_repair() {
        let mut o = output(4);
        o.write_lines(b"one\ntwo\n");
        o.out.room = usize::MAX;
        o.write_lines(b"six\n");
        assert_eq!(o.out.data, b"one\nsix\n");
        assert_eq!(dropped(&o), 1);
    }
}
