//! Cursor (keyset) pagination.
//!
//! A cursor is the position of the last item returned, opaque to clients
//! (base64url of text that only this module and the list that made it read).
//! Keyset pagination stays correct while rows are inserted and costs one
//! index range scan per page, unlike `OFFSET`.
//!
//! Most lists are ordered newest first by `(created_at, id)` and use
//! [`Position`]. A list with several orders or filters (the function search)
//! brings its own position type (a [`Cursor`]) and a *scope*, the text of its
//! order and filters: a cursor carries a fingerprint of the scope it was made
//! for, so one made for another order or query is refused (400) instead of
//! silently skipping or repeating rows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::Error;

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
/// Separates a scoped cursor's fingerprint from its position.
const SCOPE_SEPARATOR: char = '~';

/// `?limit=&cursor=` as clients send them.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 100; 20 if not sent.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A position in a list, as a cursor holds it.
pub trait Cursor: Sized {
    /// The position as text (the cursor before base64).
    fn to_text(&self) -> String;
    /// Reads what [`Cursor::to_text`] wrote; `None` for anything else.
    fn from_text(text: &str) -> Option<Self>;
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct Page<P = Position> {
    pub limit: u32,
    /// Return only rows strictly after this position (in the list's order).
    pub after: Option<P>,
    /// The fingerprint of the scope, for scoped lists.
    scope: Option<String>,
}

/// The position in a list ordered newest first by `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Page<Position> {
    /// A page of a list ordered by `(created_at, id)`.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Error> {
        Self::parse_scoped(limit, cursor, None)
    }

    pub fn after_created_at(&self) -> Option<DateTime<Utc>> {
        self.after.map(|p| p.created_at)
    }

    pub fn after_id(&self) -> Option<Uuid> {
        self.after.map(|p| p.id)
    }
}

impl<P: Cursor> Page<P> {
    /// A page of a list whose order and filters are described by `scope`
    /// (any text that differs whenever they do); `None` for a list with one
    /// fixed order.
    pub fn parse_scoped(
        limit: Option<u32>,
        cursor: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadRequest(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, got {limit}"
            )));
        }
        let scope = scope.map(fingerprint);
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(|c| decode(c, scope.as_deref()))
            .transpose()?;
        Ok(Self {
            limit,
            after,
            scope,
        })
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
        position: impl Fn(&T) -> P,
    ) -> (Vec<T>, Option<String>) {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = if more {
            rows.last().map(|row| self.encode(&position(row)))
        } else {
            None
        };
        (rows, next)
    }

    fn encode(&self, position: &P) -> String {
        let text = match &self.scope {
            Some(scope) => format!("{scope}{SCOPE_SEPARATOR}{}", position.to_text()),
            None => position.to_text(),
        };
        URL_SAFE_NO_PAD.encode(text)
    }
}

/// A short, stable fingerprint of a scope (the first 64 bits of its SHA-256).
fn fingerprint(scope: &str) -> String {
    let digest = Sha256::digest(scope.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn decode<P: Cursor>(cursor: &str, scope: Option<&str>) -> Result<P, Error> {
    let invalid = || Error::BadRequest("`cursor` is not a cursor this API returned".to_owned());
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    let position = match scope {
        None => text.as_str(),
        Some(scope) => match text.split_once(SCOPE_SEPARATOR) {
            Some((made_for, position)) if made_for == scope => position,
            _ => {
                return Err(Error::BadRequest(
                    "`cursor` belongs to a different query (another `sort`, `q` or filter): send the same parameters as for the first page, or start again without `cursor`".to_owned(),
                ))
            }
        },
    };
    P::from_text(position).ok_or_else(invalid)
}

impl Cursor for Position {
    fn to_text(&self) -> String {
        format!("{}.{}", self.created_at.timestamp_micros(), self.id)
    }

    fn from_text(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        Position {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_cursor_decodes_to_the_position_it_was_made_from() {
        let page = Page::parse(Some(1), None).unwrap();
        let (_, cursor) = page.finish(vec![1, 2], |_| position());

        let next = Page::parse(Some(1), cursor.as_deref()).unwrap();

        assert_eq!(
            next.after.map(|p| p.created_at),
            Some(position().created_at)
        );
    }

    #[test]
    fn garbage_cursors_and_out_of_range_limits_are_refused() {
        assert!(Page::parse(None, Some("not a cursor")).is_err());
        assert!(Page::parse(Some(0), None).is_err());
        assert!(Page::parse(Some(101), None).is_err());
        assert_eq!(Page::parse(None, None).unwrap().limit, 20);
    }

    #[test]
    fn a_scoped_cursor_is_refused_by_another_scope_and_by_unscoped_lists() {
        let page = Page::<Position>::parse_scoped(Some(1), None, Some("sort=name")).unwrap();
        let (_, cursor) = page.finish(vec![1, 2], |_| position());
        let cursor = cursor.as_deref();

        assert!(Page::<Position>::parse_scoped(Some(1), cursor, Some("sort=name")).is_ok());
        assert!(Page::<Position>::parse_scoped(Some(1), cursor, Some("sort=created")).is_err());
        assert!(Page::parse(Some(1), cursor).is_err());
    }
}
