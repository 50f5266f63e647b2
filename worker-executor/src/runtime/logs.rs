//! The guest's stderr: a capped, never-failing log sink.
//!
//! `MemoryOutputPipe` reports an I/O error once full. That is right for
//! stdout (the guest exits 74 and we report oversized output), but fatal for
//! logs: Rust's `eprintln!` panics when the write fails, so a chatty but
//! correct function would die because of *our* cap. This sink therefore
//! accepts every write, keeps the first `cap` bytes and remembers that it
//! dropped the rest.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much the guest may hand over per write. The value is only a permit
/// size; anything positive works because every byte is accepted.
const WRITE_PERMIT: usize = 64 * 1024;

/// Cloneable handle: the store owns one clone (as stderr), the run keeps
/// another to read the logs back afterwards.
#[derive(Clone, Debug)]
pub(crate) struct LogPipe {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Debug)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

/// The raw captured log bytes, ready for `outcome::render_logs`.
#[derive(Debug, Default)]
pub(crate) struct CapturedLogs {
    pub(crate) bytes: Vec<u8>,
    pub(crate) truncated: bool,
}

impl LogPipe {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                cap,
                truncated: false,
            })),
        }
    }

    fn append(&self, data: &[u8]) {
        let mut captured = self.inner.lock();
        let room = captured.cap.saturating_sub(captured.bytes.len());
        let kept = data.len().min(room);
        captured.bytes.extend_from_slice(&data[..kept]);
        if kept < data.len() {
            captured.truncated = true;
        }
    }

    /// Takes what was captured, leaving the pipe empty.
    pub(crate) fn take(&self) -> CapturedLogs {
        let mut captured = self.inner.lock();
        CapturedLogs {
            bytes: std::mem::take(&mut captured.bytes),
            truncated: captured.truncated,
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    // WASIp1 `fd_write` goes through this stream directly; overriding the
    // default avoids its adapter, which would spawn a tokio task per run.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_the_cap_succeed_and_mark_the_logs_truncated() {
        let mut pipe = LogPipe::new(5);

        OutputStream::write(&mut pipe, Bytes::from_static(b"abc")).unwrap();
        OutputStream::write(&mut pipe, Bytes::from_static(b"defgh")).unwrap();
        OutputStream::write(&mut pipe, Bytes::from_static(b"ijk")).unwrap();

        let logs = pipe.take();
        assert_eq!(logs.bytes, b"abcde");
        assert!(logs.truncated);
    }

    #[test]
    fn writes_up_to_the_cap_are_not_truncated() {
        let mut pipe = LogPipe::new(5);

        OutputStream::write(&mut pipe, Bytes::from_static(b"abcde")).unwrap();

        let logs = pipe.take();
        assert_eq!(logs.bytes, b"abcde");
        assert!(!logs.truncated);
    }
}
