//! Access lists (`allowedUsers`, `allowedGroups`) as functions and
//! environments take them. Who they let see what is decided in
//! [`crate::policy`] (`can_see_function`, `can_see_environment` and their
//! SQL forms).

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
    // One statement per list: a column name cannot be a parameter.
    let named = match list {
        List::Users => {
            sqlx::query_scalar!(
                r#"
                select 'function ' || name as "named!" from functions where $1 = any(allowed_users)
                union all
                select 'environment ' || name from environments where $1 = any(allowed_users)
                order by 1 limit 10
                "#,
                id
            )
            .fetch_all(db)
            .await?
        }
        List::Groups => {
            sqlx::query_scalar!(
                r#"
                select 'function ' || name as "named!" from functions where $1 = any(allowed_groups)
                union all
                select 'environment ' || name from environments where $1 = any(allowed_groups)
                order by 1 limit 10
                "#,
                id
            )
            .fetch_all(db)
            .await?
        }
    };
    Ok(named)
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
    let unknown = sqlx::query!(
        r#"
        select (select u from unnest($1::uuid[]) u where u not in (select id from users) limit 1) as "user",
               (select g from unnest($2::uuid[]) g where g not in (select id from groups) limit 1) as "group"
        "#,
        users.as_slice(),
        groups.as_slice(),
    )
    .fetch_one(db)
    .await?;
    match (unknown.user, unknown.group) {
        (Some(user), _) => Err(Error::BadRequest(format!(
            "`allowedUsers` names {user}, which is not a user"
        ))),
        (_, Some(group)) => Err(Error::BadRequest(format!(
            "`allowedGroups` names {group}, which is not a group"
        ))),
        _ => Ok(()),
    }
}
