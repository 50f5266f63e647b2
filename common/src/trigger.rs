//! What started an execution. Stored as JSON in `executions.trigger`, null
//! for a direct call of the API, which is the common case.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What started an execution, as the API shows it:
/// `{"type": "schedule", "scheduleId": …, "scheduledFor": …}` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Trigger {
    /// A call of `POST /functions/{function}/execute` or of a batch. Never
    /// stored: a null `executions.trigger` reads as this.
    Api,
    /// A tick of a schedule.
    #[serde(rename_all = "camelCase")]
    Schedule {
        /// The schedule that fired.
        schedule_id: Uuid,
        /// The tick this run is for (not when it was queued).
        scheduled_for: DateTime<Utc>,
    },
    /// A request to the function's HTTP route.
    #[serde(rename_all = "camelCase")]
    Http {
        /// The route's path prefix, e.g. `/run/hello`.
        route: String,
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// An admin re-queued a dead letter with the same input.
    #[serde(rename_all = "camelCase")]
    Requeue {
        /// The execution re-queued.
        execution_id: Uuid,
    },
}

impl Trigger {
    /// The JSON stored in `executions.trigger`: none for [`Trigger::Api`].
    pub fn to_stored(&self) -> Option<String> {
        match self {
            Trigger::Api => None,
            other => Some(serde_json::to_string(other).expect("a trigger serializes")),
        }
    }

    /// The trigger of a stored `executions.trigger`.
    pub fn from_stored(stored: Option<serde_json::Value>) -> Self {
        stored
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or(Trigger::Api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schedule_trigger_reads_as_the_api_shows_it() {
        let id = Uuid::now_v7();
        let at: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let trigger = Trigger::Schedule {
            schedule_id: id,
            scheduled_for: at,
        };
        let stored = trigger.to_stored().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
            json!({"type": "schedule", "scheduleId": id, "scheduledFor": "2026-12-07T10:00:00Z"})
        );
        assert_eq!(
            Trigger::from_stored(Some(serde_json::from_str(&stored).unwrap())),
            trigger
        );
    }

    #[test]
    fn a_direct_call_stores_nothing_and_reads_as_api() {
        assert_eq!(Trigger::Api.to_stored(), None);
        assert_eq!(Trigger::from_stored(None), Trigger::Api);
        assert_eq!(
            serde_json::to_value(Trigger::Api).unwrap(),
            json!({"type": "api"})
        );
    }
}
