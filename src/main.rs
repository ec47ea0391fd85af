//! The `portcullis` binary: parses the command line and runs it. Errors print their cause
//! chain and exit non-zero; no backtrace for a user mistake.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
