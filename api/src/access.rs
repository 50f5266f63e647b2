//! Access lists (`allowedUsers`, `allowedGroups`) as functions and
//! environments take them. The rule itself is [`crate::auth::Caller::can_access`]
//! (and its SQL form, [`crate::auth::visible_sql`]).

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};

const MAX_ENTRIES: usize = 100;

/// Which access list an id may appear in.
#[derive(Clone, Copy)]
pub enum List {
    Users,
    Groups,
}

/// Up to ten functions and environments whose `list` names `id`, as
/// "function <name>" or "environment <name>". Deleting a user or group
/// they name is refused: dropping the last entry of a list would make a
/// restricted resource public.
pub async fn naming(db: &mut PgConnection, list: List, id: Uuid) -> Result<Vec<String>> {
    let column = match list {
        List::Users => "allowed_users",
        List::Groups => "allowed_groups",
    };
    let named: Vec<(String,)> = sqlx::query_as(&format!(
        r#"
        select 'function ' || name from functions where $1 = any({column})
        union all
        select 'environment ' || name from environments where $1 = any({column})
        order by 1 limit 10
        "#
    ))
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(named.into_iter().map(|(name,)| name).collect())
}

/// Sorts and de-duplicates the lists and checks that every user and group
/// exists: an unknown id would restrict the resource to nobody, or a typo
/// would go unnoticed.
pub async fn check(
    db: &mut PgConnection,
    users: &mut Vec<Uuid>,
    groups: &mut Vec<Uuid>,
) -> Result<()> {
    for (field, ids) in [
        ("allowedUsers", &mut *users),
        ("allowedGroups", &mut *groups),
    ] {
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > MAX_ENTRIES {
            return Err(Error::BadRequest(format!(
                "`{field}` may name at most {MAX_ENTRIES} entries"
            )));
        }
    }
    let unknown: Option<(Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        r#"
        select (select u from unnest($1::uuid[]) u where u not in (select id from users) limit 1),
               (select g from unnest($2::uuid[]) g where g not in (select id from groups) limit 1)
        "#,
    )
    .bind(users.as_slice())
    .bind(groups.as_slice())
    .fetch_optional(db)
    .await?;
    match unknown {
        Some((Some(user), _)) => Err(Error::BadRequest(format!(
            "`allowedUsers` names {user}, which is not a user"
        ))),
        Some((_, Some(group))) => Err(Error::BadRequest(format!(
            "`allowedGroups` names {group}, which is not a group"
        ))),
        _ => Ok(()),
    }
}
