//! The PostgreSQL roles each service connects as.
//!
//! The migrations create one NOLOGIN group role per service, holding its
//! grants (`migrations/20261206000009_create_service_roles.sql`). A
//! deployment logs in as LOGIN roles that are members of those groups and
//! inherit their grants; `plat up` and the end-to-end tests make theirs with
//! [`create_login`] and [`set_password`]. docs/security.md, "Database roles",
//! describes the whole arrangement.

use sqlx::PgPool;

/// A service with a role of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRole {
    /// The HTTP API.
    Api,
    /// The compiler worker.
    Compiler,
    /// The executor worker.
    Executor,
}

impl ServiceRole {
    /// Every service, in a fixed order.
    pub const ALL: [ServiceRole; 3] = [Self::Api, Self::Compiler, Self::Executor];

    /// The group role the migrations create and grant to.
    pub fn group(self) -> &'static str {
        match self {
            Self::Api => "plat_api",
            Self::Compiler => "plat_compiler",
            Self::Executor => "plat_executor",
        }
    }

    /// The LOGIN role `plat up` and the tests connect as: a member of
    /// [`group`](Self::group).
    pub fn login(self) -> &'static str {
        match self {
            Self::Api => "plat_api_login",
            Self::Compiler => "plat_compiler_login",
            Self::Executor => "plat_executor_login",
        }
    }

    /// A short name: `api`, `compiler`, `executor`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Compiler => "compiler",
            Self::Executor => "executor",
        }
    }
}

/// Creates the service's LOGIN role, a member of its group, unless it
/// exists; `password` is set only when this call creates it. Needs a
/// connection with CREATEROLE (a superuser's). Roles are cluster-wide, so
/// many callers (tests on many databases) may race: losing the race reads
/// as duplicate_object, or unique_violation while the winner commits, and
/// both mean the role is there.
pub async fn create_login(
    db: &PgPool,
    role: ServiceRole,
    password: Option<&str>,
) -> Result<(), sqlx::Error> {
    // Utility statements take no parameters: the server quotes the values.
    let statement = sqlx::query_scalar!(
        r#"select case when $2::text is null then format('create role %I login in role %I', $1::text, $3::text)
                     else format('create role %I login password %L in role %I', $1, $2, $3) end
               as "statement!""#,
        role.login(),
        password,
        role.group(),
    )
    .fetch_one(db)
    .await?;
    match sqlx::raw_sql(&statement).execute(db).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(error))
            if matches!(error.code().as_deref(), Some("42710" | "23505")) =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Makes the service's LOGIN role (see [`create_login`]) log in with
/// `password` and belong to its group, whatever it was before. Not for
/// concurrent callers: PostgreSQL refuses two `alter role` of one role at
/// once.
pub async fn set_password(
    db: &PgPool,
    role: ServiceRole,
    password: &str,
) -> Result<(), sqlx::Error> {
    create_login(db, role, Some(password)).await?;
    let statements = sqlx::query!(
        r#"select format('alter role %I login password %L', $1::text, $2::text) as "alter!",
                  format('grant %I to %I', $3::text, $1) as "grant!""#,
        role.login(),
        password,
        role.group(),
    )
    .fetch_one(db)
    .await?;
    let (alter, grant) = (statements.alter, statements.grant);
    sqlx::raw_sql(&alter).execute(db).await?;
    // A no-op (with a notice) when it is already a member.
    sqlx::raw_sql(&grant).execute(db).await?;
    Ok(())
}
