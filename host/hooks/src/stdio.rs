//! Plugin stdout and stderr: each complete line goes to the host log tagged
//! with the plugin's name. The recent stderr is kept so a trap can be told
//! apart as a Rust panic (whose message is printed there just before).

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Longest line forwarded; longer output is split.
const MAX_LINE: usize = 4096;
/// How much recent stderr is kept for classifying traps.
const TAIL: usize = 4096;

#[derive(Clone)]
pub struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    inner: Arc<Mutex<LineBuffer>>,
}

#[derive(Default)]
struct LineBuffer {
    partial: Vec<u8>,
    tail: Vec<u8>,
}

impl LogStream {
    pub fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        Self {
            plugin,
            stream,
            inner: Arc::default(),
        }
    }

    /// Forgets the recent output (called before each plugin call).
    pub fn clear_tail(&self) {
        if let Ok(mut b) = self.inner.lock() {
            b.tail.clear();
        }
    }

    /// The output written since the last [`clear_tail`](Self::clear_tail).
    pub fn tail(&self) -> String {
        self.inner
            .lock()
            .map(|b| String::from_utf8_lossy(&b.tail).into_owned())
            .unwrap_or_default()
    }

    fn push(&self, bytes: &[u8]) {
        let Ok(mut b) = self.inner.lock() else { return };
        b.tail.extend_from_slice(bytes);
        let excess = b.tail.len().saturating_sub(TAIL);
        b.tail.drain(..excess);
        for &byte in bytes {
            if byte == b'\n' || b.partial.len() >= MAX_LINE {
                let line = std::mem::take(&mut b.partial);
                self.emit(&line);
                if byte == b'\n' {
                    continue;
                }
            }
            b.partial.push(byte);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        tracing::info!(target: "leaderhook::plugin", plugin = %self.plugin, stream = self.stream, "{line}");
    }
}

#[async_trait::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LINE)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
