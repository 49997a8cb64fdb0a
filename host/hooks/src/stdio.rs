//! Plugin stdout and stderr: each line goes to the host log tagged with
//! the plugin's name, through the plugin's log gate (see [`crate::loggate`]).
//! A line keeps at most [`MAX_TEXT`] bytes, with a marker if it was longer.
//! The recent stderr is kept so a trap can be told apart as a Rust panic
//! (whose message is printed there just before).

use crate::loggate::LogGate;
use crate::state::PluginContext;
use crate::stats::PluginCounters;
use crate::text::{self, MAX_TEXT};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much recent output is kept for classifying traps.
const TAIL: usize = 4096;
/// Most bytes one write may carry (WASI's `check-write` answer).
const MAX_WRITE: usize = 4096;

#[derive(Clone)]
pub struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    gate: Arc<LogGate>,
    counters: Arc<PluginCounters>,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Anything written since the last `clear_tail` (checked without the
    /// lock before and after every call: most calls write nothing).
    written: AtomicBool,
    buffer: Mutex<LineBuffer>,
}

#[derive(Default)]
struct LineBuffer {
    /// The current line's first [`MAX_TEXT`] bytes.
    partial: Vec<u8>,
    /// The current line's length in all.
    line_len: usize,
    tail: Vec<u8>,
}

impl LogStream {
    pub(crate) fn new(ctx: &PluginContext, stream: &'static str) -> Self {
        Self {
            plugin: ctx.name.clone(),
            stream,
            gate: ctx.log_gate.clone(),
            counters: ctx.counters.clone(),
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LineBuffer> {
        self.inner.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the recent output (called before each plugin call).
    pub fn clear_tail(&self) {
        if self.inner.written.swap(false, Ordering::Relaxed) {
            self.lock().tail.clear();
        }
    }

    /// The output written since the last [`clear_tail`](Self::clear_tail),
    /// at most [`TAIL`] bytes.
    pub fn tail(&self) -> String {
        String::from_utf8_lossy(&self.lock().tail).into_owned()
    }

    /// Writes out a line the plugin left unfinished (after each call).
    pub fn flush_partial(&self) {
        if !self.inner.written.load(Ordering::Relaxed) {
            return;
        }
        let mut b = self.lock();
        if b.line_len > 0 {
            self.end_line(&mut b);
        }
    }

    fn push(&self, bytes: &[u8]) {
        self.inner.written.store(true, Ordering::Relaxed);
        let mut b = self.lock();
        let keep = bytes.len().min(TAIL);
        b.tail.extend_from_slice(&bytes[bytes.len() - keep..]);
        let excess = b.tail.len().saturating_sub(TAIL);
        b.tail.drain(..excess);
        for piece in bytes.split_inclusive(|&byte| byte == b'\n') {
            let (content, ends_line) = match piece.strip_suffix(b"\n") {
                Some(content) => (content, true),
                None => (piece, false),
            };
            let room = MAX_TEXT.saturating_sub(b.partial.len());
            b.partial
                .extend_from_slice(&content[..content.len().min(room)]);
            b.line_len += content.len();
            if ends_line {
                self.end_line(&mut b);
            }
        }
    }

    fn end_line(&self, b: &mut LineBuffer) {
        let line = std::mem::take(&mut b.partial);
        let len = std::mem::take(&mut b.line_len);
        if !self.gate.admit() {
            return;
        }
        PluginCounters::bump(&self.counters.log_lines);
        let mut line = String::from_utf8_lossy(&line).into_owned();
        if len > line.len() {
            PluginCounters::bump(&self.counters.truncated);
            line.push_str(&text::marker(len));
        }
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
        Ok(MAX_WRITE)
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
