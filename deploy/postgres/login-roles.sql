-- The login roles docker-compose.yaml's services connect as: one per
-- service, a member of the role the migrations create and grant to
-- (migrations/20261206000009_create_service_roles.sql). Run by the
-- `db-roles` service after `migrate`, on every `docker compose up`, as the
-- superuser; the passwords come from the environment and are set each time,
-- so changing one in .env and running `docker compose up -d` again applies it.
-- docs/security.md, "Database roles".
\set ON_ERROR_STOP on

\getenv api_password PLAT_API_DB_PASSWORD
\getenv compiler_password PLAT_COMPILER_DB_PASSWORD
\getenv executor_password PLAT_EXECUTOR_DB_PASSWORD

select format('create role %I login in role %I', login, member_of)
from (values ('plat_api_login', 'plat_api'),
             ('plat_compiler_login', 'plat_compiler'),
             ('plat_executor_login', 'plat_executor')) as r (login, member_of)
where not exists (select from pg_roles where rolname = login)
\gexec

alter role plat_api_login login password :'api_password';
alter role plat_compiler_login login password :'compiler_password';
alter role plat_executor_login login password :'executor_password';
-- For a login role made by hand before: a notice when already a member.
grant plat_api to plat_api_login;
grant plat_compiler to plat_compiler_login;
grant plat_executor to plat_executor_login;
