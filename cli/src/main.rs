use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = plat_common::telemetry::init("plat");
    match plat::run(plat::Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // The cause chain on one line, without a backtrace: these errors say
        // what to do, and RUST_BACKTRACE may be set for the workers' sake.
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
