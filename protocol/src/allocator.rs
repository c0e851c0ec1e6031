//! Allocator settings for the daemons, which pass messages of a megabyte and more (the
//! chunks of a checkpoint stream, large input files).
//!
//! With glibc's defaults, a buffer of a megabyte gets a mapping of its own, or comes from
//! an arena that hands its free top back to the kernel as soon as a few megabytes are free.
//! A checkpoint chunk is copied into several such buffers at every hop (frames, message,
//! property list, data), each then fresh memory whose pages fault in one at a time. Measured
//! here, that was half of a move's transfer time: 16 MB took 67 ms through the controller,
//! 30 ms once the buffers were kept for reuse. The cost is memory kept resident after a
//! large transfer, bounded by the trim threshold.

/// Largest allocation served from the heap rather than a mapping of its own.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory an arena keeps at its top before giving any back.
const TRIM_THRESHOLD: i32 = 64 << 20;
/// Extra memory an arena asks for when it grows, so that the next buffers find it ready.
const TOP_PAD: i32 = 16 << 20;

/// Keeps large buffers in the heap for reuse. Call it at the start of `main`, before any
/// thread starts. False if the C library refused a setting (or is not glibc).
pub fn keep_large_buffers() -> bool {
    set_malloc_options()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_malloc_options() -> bool {
    [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_TOP_PAD, TOP_PAD),
    ]
    .into_iter()
    // SAFETY: mallopt only changes malloc's tuning parameters; it takes the arena lock
    // itself and touches no memory of ours. glibc returns 1 on success.
    .all(|(option, value)| unsafe { libc::mallopt(option, value) } == 1)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_options() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_settings() {
        assert!(super::keep_large_buffers());
    }
}
