// See Cargo.toml: allocations that cross threads (the archive's readers
// and its framer, the removal workers and the journal) cost glibc's arenas
// far more than mimalloc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// 4 KiB pages from mend's first allocation on, which Rust's runtime makes
// before `main` (see `mend_host::huge_pages`).
#[used]
#[unsafe(link_section = ".init_array")]
static HUGE_PAGES_OFF: extern "C" fn() = mend_host::huge_pages::off_before_main;

fn main() {
    // As `find` and `cat` do: when whoever reads mend's output goes away
    // (`mend --json plan | head`), mend ends by SIGPIPE, quietly. Rust's
    // runtime ignores SIGPIPE, which would make the next print panic.
    // SAFETY: at the very start of main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // 4 KiB pages for mend's own memory (turned off before `main` already,
    // see above); the commands it runs get the machine's setting back.
    // SAFETY: at the very start of main, before any thread exists.
    unsafe { mend_host::huge_pages::off_for_mend() };
    std::process::exit(mend::cli::main());
}
