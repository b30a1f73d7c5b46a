//! `eqae`: thin entry point; each subcommand's `run` lives in `eqae::cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    eqae::device::keep_large_allocations();
    let cli = eqae::cli::Cli::parse();
    match eqae::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
