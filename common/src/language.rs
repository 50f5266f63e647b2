//! The languages a function can be written in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A function's source language: the `language` of the API and the
/// database's `function_language` type.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
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
        Language::ALL
            .into_iter()
            .find(|language| language.as_str() == name)
            .ok_or_else(|| UnknownLanguage(name.to_owned()))
    }
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
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_match_serde() {
        for language in Language::ALL {
            assert_eq!(language.as_str().parse::<Language>().unwrap(), language);
            let json = serde_json::to_string(&language).unwrap();
            assert_eq!(json, format!("\"{language}\""));
        }
    }

    #[sqlx::test(migrator = "crate::db::MIGRATOR")]
    async fn each_language_is_a_value_of_the_database_type(pool: sqlx::PgPool) {
        for language in Language::ALL {
            let stored: Language = sqlx::query_scalar("select $1::text::function_language")
                .bind(language.as_str())
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(stored, language);
        }
        let names: Vec<String> =
            sqlx::query_scalar("select unnest(enum_range(null::function_language))::text")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(names, Language::ALL.map(|l| l.as_str().to_owned()));
    }

    #[sqlx::test(migrator = "crate::db::MIGRATOR")]
    async fn the_database_refuses_a_function_in_another_language(pool: sqlx::PgPool) {
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
