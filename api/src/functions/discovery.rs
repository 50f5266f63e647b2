//! `GET /functions`: the functions the caller can see, searched, filtered,
//! sorted and paged.
//!
//! `?q=&tag=&language=&status=&sort=&limit=&cursor=`:
//! - `q`: full text over the name (weight A) and description (weight B),
//!   see the migration 20261125000001; it also matches name prefixes
//!   (`hel` finds `hello-world`).
//! - `tag` (repeatable, or comma-separated): all must be present.
//! - `language`, `status` (of the newest version).
//! - `sort`: `relevance` (only with `q`, its default), `created` (the
//!   default without `q`), `updated`, `name`.
//!
//! Every filter is index-backed: `q` by the GIN index on `search` (both the
//! `websearch_to_tsquery` and the prefix `to_tsquery` use it), tags by the
//! GIN index on `tags`. Only the active filters are written into the SQL
//! (with sqlx's `QueryBuilder`, every value bound), so no generic plan has to
//! cover `$n is null or ...`.

use axum::extract::State;
use chrono::{DateTime, Utc};
use plat_common::status::UnknownStatus;
use plat_common::{Language, VersionStatus};
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{input, FunctionView, FUNCTION_COLUMNS, FUNCTION_FROM};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::{Json, Query};
use crate::pagination::{Cursor, Page};
use crate::policy;

const SORTS: &[&str] = &["relevance", "created", "updated", "name"];
const MAX_QUERY_CHARS: usize = 500;
const MAX_FILTER_TAGS: usize = 20;
const PARAMETERS: &[&str] = &["q", "tag", "language", "status", "sort", "limit", "cursor"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Relevance,
    Created,
    Updated,
    Name,
}

impl Sort {
    fn parse(raw: &str) -> Result<Self> {
        Ok(match raw {
            "relevance" => Sort::Relevance,
            "created" => Sort::Created,
            "updated" => Sort::Updated,
            "name" => Sort::Name,
            other => {
                return Err(Error::BadRequest(format!(
                    "`sort` {other:?} is not one of {}",
                    SORTS.join(", ")
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::Created => "created",
            Sort::Updated => "updated",
            Sort::Name => "name",
        }
    }

    /// The `order by` of the outer query (over the columns of `x`).
    fn order(self) -> &'static str {
        match self {
            Sort::Relevance => "x.rank desc, x.id desc",
            Sort::Created => "x.created_at desc, x.id desc",
            Sort::Updated => "x.updated_at desc, x.id desc",
            // Names are unique: the name alone orders the functions.
            Sort::Name => "x.name",
        }
    }

    /// Pushes the keyset condition that starts after the cursor's row, in
    /// this order. A cursor of another order is refused (the scope check
    /// makes that all but impossible; this keeps a bad bind from reaching SQL).
    fn push_after<'a>(self, query: &mut QueryBuilder<'a, Postgres>, after: &'a At) -> Result<()> {
        let time_column = match self {
            Sort::Updated => "x.updated_at",
            _ => "x.created_at",
        };
        match (self, after) {
            (Sort::Relevance, At::Rank(rank, id)) => query
                .push("(x.rank, x.id) < (")
                .push_bind(*rank)
                .push("::float4, ")
                .push_bind(*id)
                .push("::uuid)"),
            (Sort::Created | Sort::Updated, At::Time(at, id)) => query
                .push(format_args!("({time_column}, x.id) < ("))
                .push_bind(*at)
                .push("::timestamptz, ")
                .push_bind(*id)
                .push("::uuid)"),
            (Sort::Name, At::Name(name)) => query
                .push("x.name > ")
                .push_bind(name.as_str())
                .push("::text"),
            _ => {
                return Err(Error::BadRequest(
                    "`cursor` is not a cursor this API returned".to_owned(),
                ))
            }
        };
        Ok(())
    }
}

/// Where a page ends, in the list's order.
#[derive(Debug, Clone, PartialEq)]
enum At {
    /// `created` and `updated`.
    Time(DateTime<Utc>, Uuid),
    Name(String),
    /// The rank's bits: the exact `float4` the database computed.
    Rank(f32, Uuid),
}

impl Cursor for At {
    fn to_text(&self) -> String {
        match self {
            At::Time(at, id) => format!("t{}.{id}", at.timestamp_micros()),
            At::Name(name) => format!("n{name}"),
            At::Rank(rank, id) => format!("r{}.{id}", rank.to_bits()),
        }
    }

    fn from_text(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_at_checked(1)?;
        match kind {
            "t" => {
                let (micros, id) = rest.split_once('.')?;
                Some(At::Time(
                    DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                    id.parse().ok()?,
                ))
            }
            "n" => Some(At::Name(rest.to_owned())),
            "r" => {
                let (bits, id) = rest.split_once('.')?;
                Some(At::Rank(
                    f32::from_bits(bits.parse().ok()?),
                    id.parse().ok()?,
                ))
            }
            _ => None,
        }
    }
}

/// The search and filters of a request, validated.
#[derive(Debug, Default)]
struct Filters {
    /// The text of `q`, for `websearch_to_tsquery('english', ...)`.
    q: Option<String>,
    /// `q`'s words as a prefix query on names (`hel:*A & wor:*A`), if it
    /// has any words.
    prefix: Option<String>,
    /// Sorted and deduplicated.
    tags: Vec<String>,
    language: Option<Language>,
    status: Option<VersionStatus>,
}

impl Filters {
    /// Pushes the conditions on `f` (functions) and `v` (their newest
    /// versions): the functions the caller can see, and the active filters.
    fn push_where<'a>(&'a self, query: &mut QueryBuilder<'a, Postgres>, caller: &'a Caller) {
        policy::push_can_see_function(query, caller, "f");
        if let Some(q) = &self.q {
            query
                .push(" and (f.search @@ websearch_to_tsquery('english', ")
                .push_bind(q.as_str())
                .push(")");
            if let Some(prefix) = &self.prefix {
                query
                    .push(" or f.search @@ to_tsquery('simple', ")
                    .push_bind(prefix.as_str())
                    .push(")");
            }
            query.push(")");
        }
        if !self.tags.is_empty() {
            query
                .push(" and f.tags @> ")
                .push_bind(self.tags.as_slice())
                .push("::text[]");
        }
        if let Some(language) = self.language {
            query.push(" and f.language = ").push_bind(language);
        }
        if let Some(status) = self.status {
            query
                .push(" and v.status = ")
                .push_bind(status)
                .push("::version_status");
        }
    }

    /// Pushes the `ts_rank` of the search (0 without one).
    fn push_rank<'a>(&'a self, query: &mut QueryBuilder<'a, Postgres>) {
        let Some(q) = &self.q else {
            query.push("0::float4");
            return;
        };
        query
            .push("(ts_rank(f.search, websearch_to_tsquery('english', ")
            .push_bind(q.as_str())
            .push("))");
        if let Some(prefix) = &self.prefix {
            query
                .push(" + ts_rank(f.search, to_tsquery('simple', ")
                .push_bind(prefix.as_str())
                .push("))");
        }
        query.push(")");
    }
}

/// `q`'s words (letters and digits), lowercased, as a `to_tsquery` that
/// matches names with words starting with each of them. Only letters and
/// digits reach the query text, so nothing in `q` is tsquery syntax.
fn prefix_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_FILTER_TAGS)
        .map(|w| format!("{}:*A", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// A request's parameters, validated.
struct ListRequest {
    filters: Filters,
    sort: Sort,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl ListRequest {
    /// From the query string's pairs: `tag` may repeat, nothing else may.
    fn parse(pairs: Vec<(String, String)>) -> Result<Self> {
        let mut filters = Filters::default();
        let (mut sort, mut limit, mut cursor) = (None, None, None);
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in &pairs {
            let Some(&known) = PARAMETERS.iter().find(|p| *p == name) else {
                return Err(Error::BadRequest(format!(
                    "unknown query parameter `{name}`; expected one of {}",
                    PARAMETERS.join(", ")
                )));
            };
            if known != "tag" && seen.contains(&known) {
                return Err(Error::BadRequest(format!(
                    "`{known}` is given more than once"
                )));
            }
            seen.push(known);
            match known {
                "q" => {
                    let q = value.trim();
                    if q.chars().count() > MAX_QUERY_CHARS || q.contains('\0') {
                        return Err(Error::BadRequest(format!(
                            "`q` must be at most {MAX_QUERY_CHARS} characters, without NUL"
                        )));
                    }
                    if !q.is_empty() {
                        filters.prefix = prefix_query(q);
                        filters.q = Some(q.to_owned());
                    }
                }
                "tag" => filters.tags.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                ),
                "language" => filters.language = Some(input::language(value)?),
                "status" => {
                    let status = value
                        .parse()
                        .map_err(|unknown: UnknownStatus| Error::BadRequest(unknown.to_string()))?;
                    filters.status = Some(status);
                }
                "sort" => sort = Some(Sort::parse(value)?),
                "limit" => {
                    limit = Some(value.parse::<u32>().map_err(|_| {
                        Error::BadRequest(format!("`limit` must be a number, got {value:?}"))
                    })?)
                }
                _ => cursor = Some(value.clone()),
            }
        }
        filters.tags.sort();
        filters.tags.dedup();
        if filters.tags.len() > MAX_FILTER_TAGS {
            return Err(Error::BadRequest(format!(
                "at most {MAX_FILTER_TAGS} `tag` filters are allowed"
            )));
        }
        let sort = match (sort, filters.q.is_some()) {
            (Some(Sort::Relevance), false) => return Err(Error::BadRequest(
                "`sort=relevance` needs a search: send `q`, or sort by created, updated or name"
                    .to_owned(),
            )),
            (Some(sort), _) => sort,
            (None, true) => Sort::Relevance,
            (None, false) => Sort::Created,
        };
        Ok(Self {
            filters,
            sort,
            limit,
            cursor,
        })
    }

    /// What a cursor must have been made for: the order and every filter.
    fn scope(&self) -> String {
        let f = &self.filters;
        serde_json::json!({
            "list": "functions",
            "sort": self.sort.name(),
            "q": f.q,
            "tags": f.tags,
            "language": f.language,
            "status": f.status,
        })
        .to_string()
    }
}

/// A row of the page: the function and its rank in the search.
#[derive(sqlx::FromRow)]
struct Ranked {
    #[sqlx(flatten)]
    function: FunctionView,
    rank: f32,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct FunctionList {
    items: Vec<FunctionView>,
    next_cursor: Option<String>,
    /// How many functions match the filters (all pages), of those the
    /// caller can see.
    total: i64,
}

/// One page of the functions the caller can access that match the filters,
/// in the requested order, and how many match in all.
#[utoipa::path(
    get,
    path = "/functions",
    tag = "functions",
    operation_id = "listFunctions",
    params(
        ("q" = Option<String>, Query, description = "Full text over names and descriptions (also name prefixes); at most 500 characters"),
        ("tag" = Option<Vec<String>>, Query, description = "Repeatable or comma-separated: all must be present", explode = true),
        ("language" = Option<String>, Query, description = "`rust` or `typescript`"),
        ("status" = Option<String>, Query, description = "Of the newest version: `PENDING`, `COMPILING`, `READY` or `FAILED`"),
        ("sort" = Option<String>, Query, description = "`relevance` (only with `q`, its default), `created` (the default without `q`), `updated`, `name`"),
        ("limit" = Option<u32>, Query, description = "1 to 100; 20 if not sent", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page, with the same filters and order"),
    ),
    responses(
        (status = 200, description = "A page of the functions the caller can access, and how many match in all", body = FunctionList),
        (status = 400, description = "An unknown or invalid parameter, or a cursor of another query"),
    ),
)]
pub(super) async fn list(
    State(db): State<PgPool>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<FunctionList>> {
    let request = ListRequest::parse(pairs)?;
    let scope = request.scope();
    let page: Page<At> =
        Page::parse_scoped(request.limit, request.cursor.as_deref(), Some(&scope))?;
    let filters = &request.filters;
    let sort = request.sort;

    // The subquery is flattened by the planner: the order and the keyset
    // condition still reach the indexes of `functions`.
    let mut page_query = QueryBuilder::new("select x.* from (select ");
    page_query.push(FUNCTION_COLUMNS).push(", ");
    filters.push_rank(&mut page_query);
    page_query
        .push(" as rank ")
        .push(FUNCTION_FROM)
        .push(" where ");
    filters.push_where(&mut page_query, &caller);
    page_query.push(") x");
    if let Some(after) = &page.after {
        page_query.push(" where ");
        sort.push_after(&mut page_query, after)?;
    }
    page_query
        .push(" order by ")
        .push(sort.order())
        .push(" limit ")
        .push_bind(page.fetch_limit());
    let rows = page_query.build_query_as::<Ranked>().fetch_all(&db);

    let mut count_query = QueryBuilder::new(
        r#"
        select count(*) from functions f
        join function_versions v on v.function_id = f.id and v.version = f.latest_version
        where "#,
    );
    filters.push_where(&mut count_query, &caller);
    let total = count_query.build_query_scalar::<i64>().fetch_one(&db);

    let (rows, total) = tokio::try_join!(rows, total)?;
    let (rows, next_cursor) = page.finish(rows, |row| {
        let f = &row.function;
        match sort {
            Sort::Relevance => At::Rank(row.rank, f.id),
            Sort::Created => At::Time(f.created_at, f.id),
            Sort::Updated => At::Time(f.updated_at, f.id),
            Sort::Name => At::Name(f.name.clone()),
        }
    });
    Ok(Json(FunctionList {
        items: rows
            .into_iter()
            .map(|row| row.function.for_caller(&caller))
            .collect(),
        next_cursor,
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cursors_of_every_sort_read_back() {
        let id = Uuid::now_v7();
        for at in [
            At::Time(
                DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
                id,
            ),
            At::Name("a.b-c".to_owned()),
            At::Rank(0.607_927_1, id),
        ] {
            assert_eq!(At::from_text(&at.to_text()), Some(at));
        }
    }

    #[test]
    fn tags_repeat_or_come_comma_separated_and_the_sort_follows_q() {
        let request =
            ListRequest::parse(pairs(&[("tag", "b,a"), ("tag", "c"), ("q", "hello")])).unwrap();

        assert_eq!(request.filters.tags, ["a", "b", "c"]);
        assert_eq!(request.sort, Sort::Relevance);
        assert_eq!(request.filters.prefix.as_deref(), Some("hello:*A"));
        assert_eq!(ListRequest::parse(vec![]).unwrap().sort, Sort::Created);
    }

    #[test]
    fn unknown_values_and_relevance_without_q_are_refused() {
        for bad in [
            pairs(&[("sort", "size")]),
            pairs(&[("sort", "relevance")]),
            pairs(&[("status", "DONE")]),
            pairs(&[("language", "cobol")]),
            pairs(&[("colour", "red")]),
            pairs(&[("sort", "name"), ("sort", "name")]),
        ] {
            assert!(ListRequest::parse(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_letters_and_digits_reach_the_prefix_query() {
        assert_eq!(
            prefix_query("Hel & wo:rld!").as_deref(),
            Some("hel:*A & wo:*A & rld:*A")
        );
        assert_eq!(prefix_query("&|!"), None);
    }

    #[test]
    fn every_filter_is_bound_after_the_callers_access_lists() {
        let dev = Caller {
            user_id: Uuid::now_v7(),
            email: "dev@example.com".to_owned(),
            role: crate::auth::Role::Dev,
            groups: Default::default(),
            credential: crate::auth::Credential::ApiKey { id: Uuid::now_v7() },
            source_address: None,
        };
        let filters = Filters {
            q: Some("x".to_owned()),
            prefix: Some("x:*A".to_owned()),
            tags: vec!["t".to_owned()],
            language: None,
            status: Some(VersionStatus::Ready),
        };
        let mut query = QueryBuilder::new("");

        filters.push_where(&mut query, &dev);

        let sql = query.sql();
        assert!(sql.contains("$1::uuid = any(f.allowed_users)"), "{sql}");
        assert!(sql.contains("f.allowed_groups && $2::uuid[]"), "{sql}");
        assert!(sql.contains("websearch_to_tsquery('english', $3)"), "{sql}");
        assert!(sql.contains("to_tsquery('simple', $4)"), "{sql}");
        assert!(sql.contains("f.tags @> $5::text[]"), "{sql}");
        assert!(sql.contains("v.status = $6::version_status"), "{sql}");
        assert!(!sql.contains("f.language"), "{sql}");
    }
}
