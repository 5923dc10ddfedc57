//! The `sluice` binary: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

mod bench;
mod cli;

/// mimalloc rather than glibc's malloc: a node allocates and frees many small objects per
/// flow from several threads, and glibc's malloc and free took a quarter of its time when
/// a million sleepers were started (`perf`, `sluice bench --only scale`). Built without
/// transparent huge pages: they sped that run up further but added ~20 MiB to every node,
/// which a 10,000-deep chain cannot spare under its 600 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_library_backtraces();
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_BACKTRACE=1` asks for backtraces of panics, and by default also makes every error
/// value capture one (`std::backtrace::Backtrace::capture`): here, every eviction and every
/// guest trap, which then cost a stack walk each (a tenth of the node's time when a million
/// parked flows are evicted in turn). The node's errors name what and where, and never print
/// a Rust backtrace; so unless the user chose `RUST_LIB_BACKTRACE` itself, error values
/// capture none. Panics keep theirs.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: first thing in `main`, before any thread is started.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}
