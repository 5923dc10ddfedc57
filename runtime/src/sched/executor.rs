//! Each pool's own worker threads.
//!
//! Guest code runs on the threads of its instance's pool. A saturated pool then competes
//! for CPU with other pools only through the OS scheduler, which wakes an idle pool's
//! thread at once, instead of queueing that pool's work behind CPU-bound tasks on shared
//! executor threads (measured: a trivial flow took 75x longer while another pool's three
//! CPU-bound flows filled two shared workers). Parked instances hold no thread: threads
//! only run guest code that holds a slot, and host work.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::runtime::{Builder, Handle, Runtime};

/// A pool's worker threads: `min(size, cores)` of them.
#[derive(Debug)]
pub struct PoolExecutor {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl PoolExecutor {
    /// Threads named `sluice-<pool>` for a pool of `size` slots.
    pub fn new(pool: &str, size: usize) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let runtime = Builder::new_multi_thread()
            .worker_threads(size.clamp(1, cores))
            .thread_name(format!("sluice-{pool}"))
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(PoolExecutor {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Run `future` on this pool's threads.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Poll `future` once on the calling thread, inside this pool's runtime (timers and
    /// spawns made then belong to the pool, as on its threads); if that does not finish
    /// it, the rest runs on the pool's threads. For a caller that would only wait for the
    /// future anyway: a short one then ends without two hand-offs between threads (each
    /// a wake-up of a sleeping thread, tens of µs on a VM), and a long one holds the
    /// caller's thread until its first wait or time slice (one epoch tick) at most.
    pub async fn run_here_first(&self, mut future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let handle = &self.handle;
        // Outside the caller's cooperative budget: a caller that ran many short flows in a
        // row (each awaited, each ready at once) would otherwise run out of it, and the
        // next flow's first wait on a channel would hand it off for nothing. The first
        // poll is bounded anyway: a guest yields at its first epoch tick.
        let mut first = tokio::task::unconstrained(future.as_mut());
        let done = std::future::poll_fn(|cx| {
            let _pool = handle.enter();
            Poll::Ready(Pin::new(&mut first).poll(cx).is_ready())
        })
        .await;
        if !done {
            // Polled again there at once: whatever it waits on learns the pool task's waker
            // (the caller's, registered by the first poll, at worst wakes it for nothing).
            self.handle.spawn(future);
        }
    }

    /// A handle that spawns on this pool's threads, for tasks that outlive a borrow.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for PoolExecutor {
    fn drop(&mut self) {
        // Dropping a runtime may happen inside another runtime (a node dropped in a test):
        // shut down without blocking.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
