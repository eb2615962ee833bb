//! Keeping the studio responsive while models saturate the CPU.
//!
//! Model work runs on the worker and trainer threads, on rayon's pool (the convolution kernel)
//! and, where the user asks for it with `CANDLE_NUM_THREADS`, on candle's own pool (elementwise
//! ops; by default they run on the calling thread, see [`configure_candle_pool`]). All of them
//! are given a lower scheduling priority than the UI thread, so a frame never waits behind a
//! training step for a core: the trainer still gets every core the UI leaves idle. New threads
//! inherit their creator's priority on Linux, so candle's pool, created by the first model op on
//! a worker thread, inherits it too.

// `setpriority` is a C function; see the SAFETY note below.
#![allow(unsafe_code)]

/// Nice value of model threads (0 is normal, 19 the lowest priority).
pub const MODEL_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`MODEL_NICE`] (never raises it). Linux
/// only (elsewhere a no-op); a failure is logged, never fatal.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        if current_nice().is_some_and(|n| n >= MODEL_NICE) {
            return;
        }
        // SAFETY: `gettid` and `setpriority` take plain integers and touch no memory of ours; on
        // Linux a thread id as `who` with PRIO_PROCESS names exactly the calling thread.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, MODEL_NICE)
        };
        if rc != 0 {
            tracing::debug!(
                "could not lower a model thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// This thread's nice value (Linux; `None` elsewhere or on error).
pub fn current_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above; `getpriority` may return -1 legitimately, so errno is cleared first.
        unsafe {
            *libc::__errno_location() = 0;
            let tid = libc::gettid();
            let v = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            (*libc::__errno_location() == 0).then_some(v)
        }
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Makes candle run its elementwise CPU ops on the calling thread, unless the user has set
/// `CANDLE_NUM_THREADS` (or `CANDLE_BARRIER_POOL_SPIN_LIMIT`) themselves.
///
/// candle 0.11 runs large elementwise ops (adds, multiplies, activations) on a thread pool of
/// its own, beside rayon's, and its workers spin for 25,000 pause instructions after every op
/// before they sleep. The convolution kernel runs on rayon's pool right after such ops, so those
/// spins take the cores its matrix products need, and the thread that called the op waits for
/// a worker that the scheduler has put behind rayon's threads (12.7 % of a profiled generator
/// step on 2 cores). The ops are mostly bound by memory bandwidth, so one thread loses little.
/// Measured in README *Speed*.
///
/// Call first thing in `main`, before any other thread exists: it changes the environment.
pub fn configure_candle_pool() {
    let user_set = ["CANDLE_NUM_THREADS", "CANDLE_BARRIER_POOL_SPIN_LIMIT"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !user_set {
        // SAFETY: `main` calls this before spawning any thread, so nothing reads or writes the
        // environment at the same time.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// Builds rayon's global pool with model-priority threads. Call before any parallel work; a
/// second call (the pool already exists) changes nothing.
pub fn init_model_pool() {
    let built = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("model-{i}"))
        .start_handler(|_| lower_priority())
        .build_global();
    if let Err(e) = built {
        tracing::debug!("rayon pool already built: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn lowering_applies_to_the_calling_thread_only() {
        let before = current_nice().expect("nice of this thread");
        let inside = std::thread::spawn(|| {
            lower_priority();
            current_nice()
        })
        .join()
        .expect("thread");
        assert!(inside.is_some_and(|n| n >= MODEL_NICE), "{inside:?}");
        assert_eq!(
            current_nice(),
            Some(before),
            "the caller's priority is untouched"
        );
    }
}
