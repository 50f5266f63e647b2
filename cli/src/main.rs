use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    plat_common::telemetry::init();
    plat::run(plat::Cli::parse()).await
}
