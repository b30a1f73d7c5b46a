//! `eqae`: thin entry point; each subcommand's `run` lives in `eqae::cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    eqae::device::keep_large_allocations();
    // A panic is a bug, but the user still gets one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "Error: internal error{at}: {}; please report it",
            what.replace('\n', " ")
        );
    }));
    let cli = eqae::cli::Cli::parse();
    match eqae::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = eqae::cli::error_line(&e);
            eprintln!("Error: {line}");
            ExitCode::FAILURE
        }
    }
}
