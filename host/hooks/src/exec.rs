//! Running plugin calls, which are futures (wasmtime's async API, so that a
//! call blocked in a WASI host future can be abandoned at its deadline),
//! from synchronous code: the plugin chain, loading, the harness.

use std::future::Future;

/// A single-threaded tokio runtime with timers: what WASI's clocks and a
/// call's deadline need. One per worker thread.
pub(crate) fn new_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("building a current-thread tokio runtime")
}

/// Runs `future` to completion on this thread's own runtime. Called from
/// inside another tokio runtime (where blocking its thread is not allowed),
/// it runs on a scoped helper thread instead.
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = new_runtime();
    }
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|s| {
            s.spawn(|| RUNTIME.with(|rt| run(rt, future)))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    }
    RUNTIME.with(|rt| run(rt, future))
}

/// Most plugin calls never wait on a host future: one poll inside the
/// runtime's context finishes them, without the cost of `block_on`.
fn run<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let first = {
        let _context = runtime.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.as_mut().poll(&mut cx)
    };
    match first {
        std::task::Poll::Ready(output) => output,
        // Polled again with a real waker, which replaces the no-op one.
        std::task::Poll::Pending => runtime.block_on(future),
    }
}
