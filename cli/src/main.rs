use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = plat::Cli::parse();
    let _telemetry = (cli.runs_the_platform() || std::env::var_os("RUST_LOG").is_some())
        .then(|| plat_common::telemetry::init("plat"));
    let output = cli.output();
    match plat::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // The cause chain on one line, without a backtrace: these errors say
        // what to do, and RUST_BACKTRACE may be set for the workers' sake.
        Err(error) => {
            eprintln!("error: {error:#}");
            if output.is_json() {
                if let Some(json) = plat::failure::error_json(&error) {
                    plat::output::print_json(&json);
                }
            }
            ExitCode::from(plat::failure::exit_code(&error))
        }
    }
}
