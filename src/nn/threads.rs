//! Keeping the studio responsive while models saturate the CPU.
//!
//! Model work runs on the worker and trainer threads, on rayon's pool (the convolution kernel)
//! and on candle's own pool (elementwise ops). All of them are given a lower scheduling priority
//! than the UI thread, so a frame never waits behind a training step for a core: the trainer
//! still gets every core the UI leaves idle. New threads inherit their creator's priority on
//! Linux, so candle's pool, created by the first model op on a worker thread, inherits it too.

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
