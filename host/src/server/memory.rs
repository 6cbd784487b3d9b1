//! Giving freed memory back to the system, so that a long-lived server returns to its
//! baseline after a burst of jobs.
//!
//! Measured under the 16-client load test: the live heap stayed near 6 MB, yet resident memory
//! grew by about 30 MiB and stayed there. glibc gives each busy thread an arena of its own (up
//! to eight per core) and keeps what is freed in them for reuse; every job thread and blocking
//! thread left one behind, part-used. Fewer arenas and a trim after each job end fix that.
//! Other allocators (and other C libraries) need neither, so this is glibc-only.

/// Arenas for a server on this many cores: enough to keep threads from contending on one
/// lock, few enough that their kept free memory stays small.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn limit_arenas() {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let arenas = i32::try_from(cores.saturating_mul(2)).unwrap_or(i32::MAX);
    // SAFETY: mallopt only changes a tuning parameter of the allocator; any value is allowed.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit_arenas() {}

/// Returns the free pages of every arena to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_freed() {
    // SAFETY: malloc_trim only releases memory the allocator holds free; it takes its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed() {}
