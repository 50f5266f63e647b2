//! One module per scenario. Each returns its row group, and adds notes where
//! a number needs explaining; each leaves the queue empty and no executor
//! running, so the next starts from the same state.

pub mod backlog;
pub mod cold_start;
pub mod compile;
pub mod contention;
pub mod fairness;
pub mod latency;
pub mod latency_floor;
pub mod stats;
pub mod throughput;
pub mod webhooks;

use crate::options::{Scale, Scenario};
use crate::platform::Platform;
use crate::report::Group;

/// Runs one scenario on a running platform.
pub async fn run(
    scenario: Scenario,
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    // A scenario that failed half-way may have left work queued.
    crate::queue::clear_queue(&platform.db).await?;
    match scenario {
        Scenario::Throughput => throughput::run(platform, scale, notes).await,
        Scenario::Latency => latency::run(platform, scale, notes).await,
        Scenario::ColdStart => cold_start::run(platform, scale, notes).await,
        Scenario::Compile => compile::run(platform, notes).await,
        Scenario::Backlog => backlog::run(platform, scale, notes).await,
        Scenario::Contention => contention::run(platform, scale, notes).await,
        Scenario::Stats => stats::run(platform, scale, notes).await,
        Scenario::Fairness => fairness::run(platform, scale, notes).await,
        Scenario::Webhooks => webhooks::run(platform, scale, notes).await,
    }
}
