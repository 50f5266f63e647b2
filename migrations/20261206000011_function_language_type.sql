-- A function's language was free text: the API checked it, the database
-- did not, and a row written past the API (an operator's SQL, an old
-- import) left a version no compiler claims the right way. The same names
-- as `plat_common::Language`.
create type function_language as enum ('rust', 'typescript');

alter table functions
    alter column language type function_language using language::function_language;
