//! What a plugin writes to stdout and stderr: kept per call, capped, and
//! turned into the plugin's log lines — and, when a call fails, into its
//! failure reason (a Python traceback, a JavaScript exception, a Rust
//! panic message all go to stderr before the trap).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The most a call keeps of each stream: the last bytes written, since a
/// failure's cause is at the end.
pub const KEPT_BYTES: usize = 16 << 10;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Bytes written before the kept ones and let go.
    dropped: usize,
}

/// One captured stream; clones share it.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Buffer>>);

/// What a stream held at the end of a call.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub text: String,
    /// Bytes written before `text` and not kept.
    pub dropped: usize,
}

impl Captured {
    fn push(&self, b: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= KEPT_BYTES {
            buf.dropped += buf.bytes.len() + b.len() - KEPT_BYTES;
            buf.bytes.clear();
            buf.bytes.extend_from_slice(&b[b.len() - KEPT_BYTES..]);
            return;
        }
        let over = (buf.bytes.len() + b.len()).saturating_sub(KEPT_BYTES);
        if over > 0 {
            buf.bytes.drain(..over);
            buf.dropped += over;
        }
        buf.bytes.extend_from_slice(b);
    }

    /// Empties the stream, returning what it held.
    pub fn take(&self) -> Taken {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = std::mem::take(&mut buf.bytes);
        let dropped = std::mem::take(&mut buf.dropped);
        Taken { text: String::from_utf8_lossy(&bytes).into_owned(), dropped }
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: what does not fit pushes the oldest bytes out.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Captured {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A plugin's stdout and stderr.
#[derive(Clone, Default)]
pub struct Output {
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Output {
    /// Logs what the call wrote, line by line, tagged with the plugin's
    /// name: stdout at INFO, stderr at WARN. Returns stderr's text, for a
    /// failure's reason.
    pub fn flush_to_log(&self, plugin: &str) -> String {
        let out = self.stdout.take();
        let err = self.stderr.take();
        for (taken, stream) in [(&out, "stdout"), (&err, "stderr")] {
            if taken.dropped > 0 {
                tracing::warn!(
                    plugin,
                    stream,
                    dropped = taken.dropped,
                    "plugin output past the per-call cap not kept"
                );
            }
            for line in taken.text.lines().filter(|l| !l.trim().is_empty()) {
                if stream == "stdout" {
                    tracing::info!(plugin, stream, "{line}");
                } else {
                    tracing::warn!(plugin, stream, "{line}");
                }
            }
        }
        err.text
    }
}

/// A failure's reason with the end of what the plugin wrote to stderr.
pub fn with_stderr(message: String, stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return message;
    }
    // The end holds the cause; a reason stays readable in a status.
    const SHOWN: usize = 4 << 10;
    let mut start = stderr.len().saturating_sub(SHOWN);
    while !stderr.is_char_boundary(start) {
        start += 1;
    }
    let cut = if start > 0 { "…" } else { "" };
    format!("{message}; the plugin's stderr: {cut}{}", &stderr[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_counts_the_rest() {
        let c = Captured::default();
        c.push(&vec![b'a'; KEPT_BYTES - 1]);
        c.push(b"bc");
        let t = c.take();
        assert_eq!(t.dropped, 1);
        assert!(t.text.ends_with("abc"));
        assert_eq!(t.text.len(), KEPT_BYTES);
        c.push(&vec![b'x'; KEPT_BYTES + 5]);
        assert_eq!(c.take().dropped, 5);
        assert_eq!(c.take(), Taken::default());
    }

    #[test]
    fn a_reason_carries_the_end_of_stderr() {
        assert_eq!(with_stderr("trapped".into(), "  \n"), "trapped");
        let long = format!("{}Traceback: KeyError 'customer'", "é".repeat(5000));
        let r = with_stderr("trapped".into(), &long);
        assert!(r.starts_with("trapped; the plugin's stderr: …"));
        assert!(r.ends_with("KeyError 'customer'"));
    }
}
