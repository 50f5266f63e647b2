//! Following the API's live streams (Server-Sent Events): `executions
//! --follow`, `invoke` and `deploy` wait on them instead of polling.

use std::collections::VecDeque;
use std::time::Duration;

use plat_common::sse::{Event, Parser};
use serde_json::Value;

use crate::client::{ApiClient, ApiError};

/// Until the server says otherwise (`retry:`), how long to wait before
/// reconnecting.
const DEFAULT_RETRY: Duration = Duration::from_secs(2);
/// Reconnections in a row that may fail to reach the server before
/// following gives up.
const MAX_UNREACHABLE: u32 = 10;

/// A stream that reconnects when the server ends it or the connection
/// breaks (as a browser's `EventSource` does), sending `Last-Event-ID`.
/// Whoever reads it stops when they have what they wanted.
pub struct Stream {
    client: ApiClient,
    segments: Vec<String>,
    response: Option<reqwest::Response>,
    parser: Parser,
    pending: VecDeque<Event>,
    unreachable: u32,
}

impl Stream {
    /// Not connected yet: the first [`Self::next`] connects, so a refused
    /// stream (404, 401) is its error.
    pub fn new(client: &ApiClient, segments: &[&str]) -> Self {
        Self {
            client: client.clone(),
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            response: None,
            parser: Parser::default(),
            pending: VecDeque::new(),
            unreachable: 0,
        }
    }

    /// The next event, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<Event, ApiError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let Some(response) = self.response.as_mut() else {
                self.connect().await?;
                continue;
            };
            match response.chunk().await {
                Ok(Some(bytes)) => self.pending.extend(self.parser.feed(&bytes)),
                // Ended (the server stopped, or the stream's time was up) or
                // broken: reconnect after the server's `retry:`.
                Ok(None) | Err(_) => {
                    self.response = None;
                    tokio::time::sleep(self.retry()).await;
                }
            }
        }
    }

    /// The next event's name and JSON data (events whose data is not JSON
    /// are skipped: none are documented).
    pub async fn next_json(&mut self) -> Result<(String, Value), ApiError> {
        loop {
            let event = self.next().await?;
            if let Ok(data) = serde_json::from_str(&event.data) {
                return Ok((event.event, data));
            }
        }
    }

    async fn connect(&mut self) -> Result<(), ApiError> {
        let segments: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        match self
            .client
            .open_stream(&segments, self.parser.last_id())
            .await
        {
            Ok(response) => {
                self.unreachable = 0;
                self.response = Some(response);
                Ok(())
            }
            // A restarting server: keep trying for a while.
            Err(ApiError::Unreachable { .. }) if self.unreachable < MAX_UNREACHABLE => {
                self.unreachable += 1;
                tokio::time::sleep(self.retry()).await;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn retry(&self) -> Duration {
        self.parser
            .retry_ms()
            .map_or(DEFAULT_RETRY, Duration::from_millis)
    }
}

/// Follows execution `id` until it finished; returns its record.
pub async fn finished_execution(client: &ApiClient, id: &str) -> Result<Value, ApiError> {
    let mut stream = Stream::new(client, &["executions", id, "events"]);
    loop {
        let (event, data) = stream.next_json().await?;
        if event == "execution" {
            return Ok(data);
        }
    }
}
