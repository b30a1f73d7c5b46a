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
            // one line, whatever a message or a file name holds
            // each cause once: an error that quotes its source's text
            // (an OS error, say) is not followed by that text again
            let mut text = String::new();
            for cause in e.chain() {
                let part = cause.to_string();
                if text.contains(&part) {
                    continue;
                }
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&part);
            }
            let line: String = text
                .chars()
                .flat_map(|c| {
                    let shown: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    shown
                })
                .collect();
            eprintln!("Error: {line}");
            ExitCode::FAILURE
        }
    }
}
