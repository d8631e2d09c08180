//! Transparent huge pages: off for mend, as the machine has them for what
//! mend runs.
//!
//! mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`),
//! so even where the machine gives them only on request a run's first
//! allocations fault in 2 MiB pages, each cleared whole, and now and then
//! wait for the kernel to compact memory. Measured on this 2-core machine
//! (tmpfs, 21 interleaved rounds): archive-cleanup of 10,000 WAL segments
//! took 48.7 ms at the median with huge pages, with 5 runs of 70 to 91 ms,
//! and 47.1 ms without, none above 56 ms; a million-file cull peaked at 55
//! MB of memory with them and 43 MB without. mend's memory is small and
//! short-lived: 4 KiB pages are what it needs.
//!
//! `PR_SET_THP_DISABLE` is kept by every child across `execve`, and a
//! runbook's command may start a service (a database that wants huge
//! pages, or one that wants them off and says so itself): the commands mend
//! runs get the setting back as mend found it ([`restore_in_child`]).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Set when mend turned huge pages off (itself, or the mend that started
/// this one: a rehearsal's or a local fleet host's), not whoever started
/// mend.
static TURNED_OFF: AtomicBool = AtomicBool::new(false);

/// In mend's environment when a mend turned huge pages off, so that a mend
/// it starts (which inherits the setting) knows it was not the machine's.
/// Commands get a clean environment and never see it.
const MARK: &str = "MEND_HUGE_PAGES_TURNED_OFF";

/// What [`off_before_main`] found and did.
static BEFORE_MAIN: AtomicU8 = AtomicU8::new(NOT_RUN);
const NOT_RUN: u8 = 0;
/// Huge pages were on for mend, and it turned them off.
const TURNED_OFF_BEFORE_MAIN: u8 = 1;
/// They were off already (the machine's setting, or a mend's that started
/// this one), or could not be turned off.
const LEFT: u8 = 2;

/// Turns transparent huge pages off before mend's first allocation: Rust's
/// runtime allocates before `main`, and that first allocation faulted in a
/// whole 2 MiB page of mimalloc's (archive-cleanup of 10,000 WAL segments,
/// interleaved rounds on this 2-core VM: 51.0 ms with it, 48.9 ms without,
/// in 31 rounds; 47.2 and 45.1 in 25). The binary calls it from
/// `.init_array`, which runs before the runtime. Only a `prctl`: no
/// allocation, no environment, nothing of `std` that needs its runtime.
pub extern "C" fn off_before_main() {
    // SAFETY: prctl with integer arguments only.
    let off = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    let done = off == 0 && unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0;
    BEFORE_MAIN.store(
        if done { TURNED_OFF_BEFORE_MAIN } else { LEFT },
        Ordering::Relaxed,
    );
}

/// Turns transparent huge pages off for this process (if
/// [`off_before_main`] did not already), and says so to the mends it
/// starts.
///
/// # Safety
/// At the start of `main`, before any thread: it sets an environment
/// variable.
pub unsafe fn off_for_mend() {
    if BEFORE_MAIN.load(Ordering::Relaxed) == NOT_RUN {
        off_before_main();
    }
    if BEFORE_MAIN.load(Ordering::Relaxed) == TURNED_OFF_BEFORE_MAIN {
        TURNED_OFF.store(true, Ordering::Relaxed);
        // SAFETY: no other thread exists yet (the caller's promise).
        unsafe { std::env::set_var(MARK, "1") };
    } else if std::env::var_os(MARK).is_some() {
        // SAFETY: as above.
        let off = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        TURNED_OFF.store(off == 1, Ordering::Relaxed);
    }
}

/// Whether a child must have huge pages turned back on.
pub fn turned_off() -> bool {
    TURNED_OFF.load(Ordering::Relaxed)
}

/// In a child between `fork` and `exec`: huge pages as mend found them.
///
/// # Safety
/// Async-signal-safe (one `prctl`), as `pre_exec` requires.
pub unsafe fn restore_in_child() -> std::io::Result<()> {
    if turned_off() && unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
