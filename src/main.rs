//! The `portcullis` binary: parses the command line and runs it. Errors print their cause
//! chain and exit non-zero; no backtrace for a user mistake.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

async fn run() -> std::process::ExitCode {
    portcullis::install_crypto_provider();
    let cli = portcullis::cli::Cli::parse();
    match portcullis::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives every thread that allocates an arena of its own (up to eight per core), and
/// each keeps the memory it freed. Arenas exist so that threads running at the same time do
/// not wait for each other's allocations: no more of them can run at once than the process
/// has cores, so Portcullis allows one arena per core it may run on (its CPU affinity and
/// quota, as `available_parallelism` reads them). SQLite's connection threads, the bcrypt pool
/// and the metrics upkeep share them. Measured on one core under the benchmark's load: about
/// 9 MiB less peak memory than glibc's default, no loss of throughput. Must run before any
/// thread starts; an operator's own `MALLOC_ARENA_MAX` wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes allocator settings; it is called here before the
        // runtime or any other thread exists, so no allocation runs concurrently.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
