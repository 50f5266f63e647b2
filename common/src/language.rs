//! The languages a function can be written in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Type;
use utoipa::ToSchema;

/// A function's source language: the `language` of the API and the
/// database's `function_language` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Type, ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "function_language", rename_all = "lowercase")]
pub enum Language {
    /// A Rust crate's `src/lib.rs` with a `handler` function.
    Rust,
    /// A TypeScript module that exports a `handler` function.
    TypeScript,
}

impl Language {
    /// Every language, in the order error messages list them.
    pub const ALL: [Language; 2] = [Language::Rust, Language::TypeScript];

    /// The wire and database name, e.g. `typescript`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::TypeScript => "typescript",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Language::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("`language` {0:?} is not supported; supported: {supported}", supported = names(&Language::ALL))]
pub struct UnknownLanguage(pub String);

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        by_name(&Language::ALL, name).ok_or_else(|| UnknownLanguage(name.to_owned()))
    }
}

/// The one of `values` named `name`.
pub(crate) fn by_name<T: Copy + fmt::Display>(values: &[T], name: &str) -> Option<T> {
    values
        .iter()
        .copied()
        .find(|value| value.to_string() == name)
}

/// `a, b, c` of the names of `values`, for error messages.
pub(crate) fn names<T: fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fmt::{Debug, Display};

    use sqlx::{Decode, Encode, PgPool, Postgres};

    use super::*;

    /// Each of `all` parses back from its name, is its name in JSON, and
    /// decodes from and encodes to the database type `type_name`, whose
    /// values are exactly these names in this order.
    pub(crate) async fn agrees_with_the_database<T>(pool: &PgPool, type_name: &str, all: &[T])
    where
        T: Copy + PartialEq + Debug + Display + FromStr<Err: Debug> + Serialize + Send + Unpin,
        T: Type<Postgres> + for<'q> Encode<'q, Postgres> + for<'r> Decode<'r, Postgres>,
    {
        for &value in all {
            assert_eq!(value.to_string().parse::<T>().unwrap(), value);
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{value}\"")
            );
            let read: T = sqlx::query_scalar(&format!("select $1::{type_name}"))
                .bind(value)
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(read, value);
        }
        let names: Vec<String> = sqlx::query_scalar(&format!(
            "select unnest(enum_range(null::{type_name}))::text"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(names, all.iter().map(T::to_string).collect::<Vec<_>>());
    }

    #[sqlx::test(migrator = "crate::db::MIGRATOR")]
    async fn the_languages_are_the_database_type(pool: PgPool) {
        agrees_with_the_database(&pool, "function_language", &Language::ALL).await;
    }

    #[sqlx::test(migrator = "crate::db::MIGRATOR")]
    async fn the_database_refuses_a_function_in_another_language(pool: PgPool) {
        let error = sqlx::query(
            "insert into functions (id, name, language) values (gen_random_uuid(), 'old', 'cobol')",
        )
        .execute(&pool)
        .await
        .unwrap_err();

        let code = error.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("22P02"), "{error}");
    }

    #[test]
    fn an_unknown_name_says_what_is_supported() {
        let error = "cobol".parse::<Language>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`language` \"cobol\" is not supported; supported: rust, typescript"
        );
    }
}
