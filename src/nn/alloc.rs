//! Allocator tuning for tensor workloads.
//!
//! Every candle op allocates its output, and a training step at 256 px allocates and frees
//! hundreds of megabytes in buffers of a few megabytes each. glibc serves such buffers with fresh
//! `mmap`s and hands them back on `free`, so each one costs a page fault per 4 KiB page and the
//! kernel zeroing it: measured with `dtgan-studio bench --net generator`, that was 45 % of a
//! forward pass (0.48 s against 0.27 s). Raising the mmap and trim thresholds keeps freed buffers
//! in the heap for the next op.

// `mallopt` is a C function; see the SAFETY note below.
#![allow(unsafe_code)]

/// Buffers up to this size come from the heap, not from their own `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 30;
/// Freed memory at the top of the heap is returned to the OS only beyond this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 512 << 20;

/// Tunes the process's allocator for tensor work; call once at start-up, before other threads
/// exist. Does nothing on platforms other than Linux with glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes glibc's malloc parameters, takes plain integers, and
        // is called before any other thread allocates.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}
