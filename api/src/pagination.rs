//! Cursor pagination for lists ordered newest first by `(created_at, id)`.
//!
//! A cursor is the position of the last item returned, opaque to clients
//! (base64url of `<microseconds>.<uuid>`). Keyset pagination stays correct
//! while rows are inserted and costs one index range scan per page, unlike
//! `OFFSET`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::Error;

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

/// `?limit=&cursor=` as clients send them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    /// Return only rows strictly after (older than) this position.
    pub after: Option<Position>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Page {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadRequest(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, got {limit}"
            )));
        }
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(Position::decode)
            .transpose()?;
        Ok(Self { limit, after })
    }

    /// Rows to fetch: one more than the page, to learn whether another follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the fetched rows to the page and returns the cursor of the next
    /// page, if there is one.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        position: impl Fn(&T) -> Position,
    ) -> (Vec<T>, Option<String>) {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = if more {
            rows.last().map(|row| position(row).encode())
        } else {
            None
        };
        (rows, next)
    }

    pub fn after_created_at(&self) -> Option<DateTime<Utc>> {
        self.after.map(|p| p.created_at)
    }

    pub fn after_id(&self) -> Option<Uuid> {
        self.after.map(|p| p.id)
    }
}

impl Position {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    fn decode(cursor: &str) -> Result<Self, Error> {
        let invalid = || Error::BadRequest("`cursor` is not a cursor this API returned".to_owned());
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(raw).map_err(|_| invalid())?;
        let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        Ok(Self {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_the_position_it_was_made_from() {
        let position = Position {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };

        assert_eq!(Position::decode(&position.encode()).unwrap(), position);
    }

    #[test]
    fn garbage_cursors_and_out_of_range_limits_are_refused() {
        assert!(Page::parse(None, Some("not a cursor")).is_err());
        assert!(Page::parse(Some(0), None).is_err());
        assert!(Page::parse(Some(101), None).is_err());
        assert_eq!(Page::parse(None, None).unwrap().limit, 20);
    }
}
