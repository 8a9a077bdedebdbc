//! Log lines beside the bars: the `tracing-subscriber` writer that prints each event whole,
//! through the bars that own stderr (see [`super`]'s module docs).

use std::io::{IsTerminal, Write};
use std::sync::PoisonError;
#[cfg(test)]
use std::sync::{Arc, Mutex};

use super::ACTIVE;
#[cfg(test)]
use super::lock;

/// A `tracing_subscriber::fmt` writer that keeps log lines from tearing the progress bars.
///
/// Use it in place of `std::io::stderr`: each event is buffered and, when the event is
/// complete, written in one piece through [`MultiProgress::suspend`] of the bars registered by
/// [`Progress::new_if_terminal`] (or straight to stderr when there are none).
#[derive(Debug, Clone, Default)]
pub struct LogWriter {
    sink: Sink,
    /// The formatter writes colour codes (stderr is a terminal): keep its ESC bytes.
    colour: bool,
}

#[derive(Debug, Clone, Default)]
enum Sink {
    #[default]
    Stderr,
    /// Test hook: lines collected instead of written.
    #[cfg(test)]
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl LogWriter {
    pub fn new() -> Self {
        Self {
            colour: std::io::stderr().is_terminal(),
            ..Self::default()
        }
    }
}

/// One log event being written; flushed when the formatter drops it.
pub struct LogLine {
    buf: Vec<u8>,
    sink: Sink,
    colour: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            buf: Vec::with_capacity(256),
            sink: self.sink.clone(),
            colour: self.colour,
        }
    }
}

impl LogLine {
    fn emit(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let raw = std::mem::take(&mut self.buf);
        // Names and server text inside the line must not forge lines or move the cursor.
        let buf = crate::text::escape_log_line(&raw, self.colour);
        let write = || match &self.sink {
            Sink::Stderr => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&buf);
                let _ = err.flush();
            }
            #[cfg(test)]
            Sink::Buffer(b) => lock(b).extend_from_slice(&buf),
        };
        let active = ACTIVE
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match active {
            Some((_, multi)) => multi.suspend(write),
            None => write(),
        }
    }
}

impl Write for LogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit();
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_written_whole_and_through_the_bars() {
        use tracing_subscriber::fmt::MakeWriter;
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = LogWriter {
            sink: Sink::Buffer(buf.clone()),
            colour: false,
        };
        {
            let mut line = w.make_writer();
            line.write_all(b"hello ").unwrap();
            line.write_all(b"world\n").unwrap();
            assert!(
                lock(&buf).is_empty(),
                "nothing before the event is complete"
            );
        }
        assert_eq!(&*lock(&buf), b"hello world\n");

        // With bars registered, the line still arrives (suspend runs it) and nothing deadlocks
        // while the render thread draws.
        let multi =
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        *ACTIVE.write().unwrap() = Some((0, multi));
        let mut line = w.make_writer();
        line.write_all(b"second\n").unwrap();
        line.flush().unwrap();
        drop(line);
        *ACTIVE.write().unwrap() = None;
        assert_eq!(&*lock(&buf), b"hello world\nsecond\n");
    }

    #[test]
    fn a_subscriber_can_use_the_writer() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = LogWriter {
            sink: Sink::Buffer(buf.clone()),
            colour: false,
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(w)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(repo = "acme/api", "uploaded");
            // A name from the listing cannot start a line of its own.
            let name = "acme/x\n2026-12-01T00:00:00Z ERROR forged\r";
            tracing::info!(repo = %name, "uploaded");
        });
        let text = String::from_utf8(lock(&buf).clone()).unwrap();
        assert!(
            text.contains("uploaded") && text.contains("acme/api"),
            "{text}"
        );
        assert_eq!(text.matches('\n').count(), 2, "{text}");
        assert!(
            !text.contains('\r') && text.contains("acme/x\\n2026"),
            "{text}"
        );
    }
}
