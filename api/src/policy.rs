//! Who may do what: every authorization decision of the API, one rule per
//! decision, each saying in its doc comment what it allows. The handlers ask
//! here and nowhere else (`auth` only says who the caller is).
//!
//! There are two roles: `ADMIN` may do everything through the API; `DEV`
//! works with what the access lists give them and with their own keys,
//! sessions, account and executions (docs/security.md, "People").
//!
//! How a refusal looks is part of the rule:
//! - `may_*` rules return `Err(Error::Forbidden)` (403, problem type
//!   `forbidden`, "only admins may ..."): the caller knows the resource
//!   exists, their role may not do this.
//! - `can_*` rules answer yes or no; the handler answers no with 404, worded
//!   like a resource that does not exist, for what the caller may not see.
//! - `whose_*` rules say whose resources a listing is about.
//! - `push_*` rules are the SQL form of a `can_*` rule, for listings.

use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::error::{Error, Result};

fn is_admin(caller: &Caller) -> bool {
    caller.role == Role::Admin
}

/// Refuses (403) unless the caller is an admin; `action` completes
/// "only admins may ...".
fn admins_only(caller: &Caller, action: &str) -> Result<()> {
    if is_admin(caller) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("only admins may {action}")))
    }
}

/// The user a request about "someone's" resources is about: `requested`,
/// or the caller when it names no one. Naming another user takes an admin;
/// `action` completes "only admins may ...".
fn acting_for(caller: &Caller, requested: Option<Uuid>, action: &str) -> Result<Uuid> {
    let user_id = requested.unwrap_or(caller.user_id);
    if user_id != caller.user_id {
        admins_only(caller, action)?;
    }
    Ok(user_id)
}

// The access rule of functions and environments.

/// Plat's access rule for functions and environments (their
/// `allowedUsers` and `allowedGroups`): admins see all; a resource with no
/// allowed users and no allowed groups is public; otherwise the caller must
/// be named, or be in a named group.
fn can_access(caller: &Caller, allowed_users: &[Uuid], allowed_groups: &[Uuid]) -> bool {
    is_admin(caller)
        || (allowed_users.is_empty() && allowed_groups.is_empty())
        || allowed_users.contains(&caller.user_id)
        || allowed_groups
            .iter()
            .any(|group| caller.groups.contains(group))
}

/// [`can_access`] as an SQL condition over the `allowed_users` and
/// `allowed_groups` of `table` (an alias in the query, never input), with
/// the caller bound. For an admin it is `true`, so their listings plan
/// without the access lists.
fn push_can_access<'a>(query: &mut QueryBuilder<'a, Postgres>, caller: &'a Caller, table: &str) {
    if is_admin(caller) {
        query.push("true");
        return;
    }
    query
        .push(format_args!(
            "((cardinality({table}.allowed_users) = 0 and cardinality({table}.allowed_groups) = 0) or "
        ))
        .push_bind(caller.user_id)
        .push(format_args!(
            "::uuid = any({table}.allowed_users) or {table}.allowed_groups && "
        ))
        .push_bind(caller.groups.as_slice())
        .push("::uuid[])");
}

// Functions and their versions.

/// A function is seen (listed, read, run, its history read) by whoever
/// [`can_access`] it; to anyone else it does not exist.
pub fn can_see_function(caller: &Caller, allowed_users: &[Uuid], allowed_groups: &[Uuid]) -> bool {
    can_access(caller, allowed_users, allowed_groups)
}

/// [`can_see_function`] over the functions aliased `table` in a listing.
pub fn push_can_see_function<'a>(
    query: &mut QueryBuilder<'a, Postgres>,
    caller: &'a Caller,
    table: &str,
) {
    push_can_access(query, caller, table);
}

/// Only admins read the values of a function's own environment variables:
/// every DEV who may run a function may read it, and the values are often
/// credentials (everyone else sees the names, with `***` for values).
pub fn can_read_function_variables(caller: &Caller) -> bool {
    is_admin(caller)
}

/// Only admins create functions.
pub fn may_create_functions(caller: &Caller) -> Result<()> {
    admins_only(caller, "create functions")
}

/// Only admins change functions (which uploads a new version).
pub fn may_change_functions(caller: &Caller) -> Result<()> {
    admins_only(caller, "change functions")
}

/// Only admins delete functions.
pub fn may_delete_functions(caller: &Caller) -> Result<()> {
    admins_only(caller, "delete functions")
}

/// Only admins choose which version of a function is active.
pub fn may_roll_back_functions(caller: &Caller) -> Result<()> {
    admins_only(caller, "roll back functions")
}

/// Only admins deprecate versions.
pub fn may_deprecate_versions(caller: &Caller) -> Result<()> {
    admins_only(caller, "deprecate versions")
}

/// Only admins retire versions.
pub fn may_retire_versions(caller: &Caller) -> Result<()> {
    admins_only(caller, "retire versions")
}

/// A deprecated version that is not the active one runs only for admins:
/// an old version may lack today's fixes, and runs with today's
/// environment (docs/versions-and-discovery.md). Retired versions run for
/// no one, which is not a question of who asks.
pub fn can_run_deprecated_versions(caller: &Caller) -> bool {
    is_admin(caller)
}

// Executions.

/// An execution is seen (read, cancelled) by admins, and by the user who
/// started it while they can still see its function: the function's access
/// lists are read in the same query, so losing access to a function hides
/// its history at once. A deleted function's access lists are gone with it,
/// so its history is for admins only. As SQL over the executions aliased
/// `execution` and the functions aliased `function`, left joined.
pub fn push_can_see_execution<'a>(
    query: &mut QueryBuilder<'a, Postgres>,
    caller: &'a Caller,
    execution: &str,
    function: &str,
) {
    if is_admin(caller) {
        query.push("true");
        return;
    }
    query
        .push(format_args!(
            "({function}.id is not null and {execution}.created_by = "
        ))
        .push_bind(caller.user_id)
        .push(" and ");
    push_can_see_function(query, caller, function);
    query.push(")");
}

/// Whose executions a listing of a function's history shows (the caller
/// already sees the function): everyone's for an admin (`None`), only the
/// caller's own for anyone else.
pub fn whose_executions(caller: &Caller) -> Option<Uuid> {
    (!is_admin(caller)).then_some(caller.user_id)
}

/// The per-user quota of executions queued or running binds everyone but
/// admins.
pub fn has_queue_quota(caller: &Caller) -> bool {
    !is_admin(caller)
}

// Schedules.

/// A function's schedules are managed (created, changed, paused, deleted)
/// by whoever may change the function: admins. Whoever sees the function
/// sees them.
pub fn may_manage_schedules(caller: &Caller) -> Result<()> {
    admins_only(caller, "manage schedules (whoever may change the function)")
}

// Environments.

/// An environment (its variables' names, and the values of those that are
/// not secret) is seen by whoever [`can_access`] it; to anyone else it
/// does not exist. A secret's value is seen by no one.
pub fn can_see_environment(
    caller: &Caller,
    allowed_users: &[Uuid],
    allowed_groups: &[Uuid],
) -> bool {
    can_access(caller, allowed_users, allowed_groups)
}

/// [`can_see_environment`] over the environments aliased `table` in a listing.
pub fn push_can_see_environment<'a>(
    query: &mut QueryBuilder<'a, Postgres>,
    caller: &'a Caller,
    table: &str,
) {
    push_can_access(query, caller, table);
}

/// Only admins create environments.
pub fn may_create_environments(caller: &Caller) -> Result<()> {
    admins_only(caller, "create environments")
}

/// Only admins change environments.
pub fn may_change_environments(caller: &Caller) -> Result<()> {
    admins_only(caller, "change environments")
}

/// Only admins delete environments.
pub fn may_delete_environments(caller: &Caller) -> Result<()> {
    admins_only(caller, "delete environments")
}

// Users.

/// Only admins list users.
pub fn may_list_users(caller: &Caller) -> Result<()> {
    admins_only(caller, "list users")
}

/// A user is seen by themselves and by admins; to anyone else they do not
/// exist.
pub fn can_see_user(caller: &Caller, user_id: Uuid) -> bool {
    user_id == caller.user_id || is_admin(caller)
}

/// Only admins create users.
pub fn may_create_users(caller: &Caller) -> Result<()> {
    admins_only(caller, "create users")
}

/// A user is changed by themselves (display name and password, see
/// [`may_change_email_role_or_disabled`]) and by admins; to anyone else
/// they do not exist.
pub fn can_change_user(caller: &Caller, user_id: Uuid) -> bool {
    can_see_user(caller, user_id)
}

/// Only admins change a user's email, role or disabled flag, their own
/// included: what the account may do is not the account's to decide.
pub fn may_change_email_role_or_disabled(caller: &Caller) -> Result<()> {
    admins_only(caller, "change a user's email, role or disabled flag")
}

/// Changing one's own password takes the current one. An account without a
/// password gets its first from an admin or a reset token, never from
/// itself (whoever holds one of its API keys would turn it into a lasting
/// dashboard login), unless it is an admin's.
pub fn can_set_own_first_password(caller: &Caller) -> bool {
    is_admin(caller)
}

/// Only admins delete users.
pub fn may_delete_users(caller: &Caller) -> Result<()> {
    admins_only(caller, "delete users")
}

/// Only admins issue password reset tokens.
pub fn may_issue_password_resets(caller: &Caller) -> Result<()> {
    admins_only(caller, "issue password reset tokens")
}

// Groups: admins only, reading included (membership says who can see what).

/// Only admins list groups.
pub fn may_list_groups(caller: &Caller) -> Result<()> {
    admins_only(caller, "list groups")
}

/// Only admins read groups.
pub fn may_read_groups(caller: &Caller) -> Result<()> {
    admins_only(caller, "read groups")
}

/// Only admins create groups.
pub fn may_create_groups(caller: &Caller) -> Result<()> {
    admins_only(caller, "create groups")
}

/// Only admins rename groups.
pub fn may_rename_groups(caller: &Caller) -> Result<()> {
    admins_only(caller, "rename groups")
}

/// Only admins delete groups.
pub fn may_delete_groups(caller: &Caller) -> Result<()> {
    admins_only(caller, "delete groups")
}

/// Only admins read a group's members.
pub fn may_read_group_members(caller: &Caller) -> Result<()> {
    admins_only(caller, "read group members")
}

/// Only admins add or remove a group's members.
pub fn may_change_group_members(caller: &Caller) -> Result<()> {
    admins_only(caller, "change group members")
}

// API keys and sessions: one's own, or anyone's for an admin.

/// An API key is seen (read, revoked) by its user and by admins; to anyone
/// else it does not exist.
pub fn can_see_api_key(caller: &Caller, owner: Uuid) -> bool {
    owner == caller.user_id || is_admin(caller)
}

/// Whose keys a listing shows: the caller's own when `requested` names no
/// one, everyone's (`None`) for an admin who names no one; naming another
/// user takes an admin.
pub fn whose_api_keys(caller: &Caller, requested: Option<Uuid>) -> Result<Option<Uuid>> {
    match requested {
        None if is_admin(caller) => Ok(None),
        requested => acting_for(caller, requested, "list other users' API keys").map(Some),
    }
}

/// Whose a new API key is: the caller's own unless `requested` names
/// another user, which takes an admin.
pub fn whose_new_api_key(caller: &Caller, requested: Option<Uuid>) -> Result<Uuid> {
    acting_for(caller, requested, "create API keys for other users")
}

/// Whose live sessions a listing shows: the caller's own unless `requested`
/// names another user, which takes an admin.
pub fn whose_sessions(caller: &Caller, requested: Option<Uuid>) -> Result<Uuid> {
    acting_for(caller, requested, "list other users' sessions")
}

/// A session is ended by its user and by admins; to anyone else it does
/// not exist.
pub fn can_end_session(caller: &Caller, owner: Uuid) -> bool {
    owner == caller.user_id || is_admin(caller)
}

// Operating the platform.

/// Only admins read the queues (what is waiting, for whom).
pub fn may_read_queues(caller: &Caller) -> Result<()> {
    admins_only(caller, "read the queues")
}

/// Only admins re-queue dead letters: a re-queue runs someone else's
/// function again, on that user's behalf and outside their quota.
pub fn may_requeue_executions(caller: &Caller) -> Result<()> {
    admins_only(caller, "re-queue executions")
}

/// Only admins read the audit log.
pub fn may_read_audit_log(caller: &Caller) -> Result<()> {
    admins_only(caller, "read the audit log")
}

/// Only admins read the metrics.
pub fn may_read_metrics(caller: &Caller) -> Result<()> {
    admins_only(caller, "read the metrics")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::Credential;

    fn caller(role: Role, groups: &[Uuid]) -> Caller {
        Caller {
            user_id: Uuid::now_v7(),
            email: "someone@example.com".to_owned(),
            role,
            groups: Arc::new(groups.to_vec()),
            credential: Credential::ApiKey { id: Uuid::now_v7() },
            source_address: None,
        }
    }

    #[test]
    fn the_access_rule_lets_admins_everyone_on_public_and_the_named_on_restricted() {
        let group = Uuid::now_v7();
        let (admin, dev, member) = (
            caller(Role::Admin, &[]),
            caller(Role::Dev, &[]),
            caller(Role::Dev, &[group]),
        );
        let someone_else = [Uuid::now_v7()];

        assert!(can_access(&dev, &[], &[]), "public");
        assert!(can_access(&admin, &someone_else, &[]));
        assert!(!can_access(&dev, &someone_else, &[]));
        assert!(can_access(&dev, &[dev.user_id], &[]));
        assert!(can_access(&member, &someone_else, &[group]));
        assert!(!can_access(&dev, &[], &[group]));
    }

    #[test]
    fn a_dev_refused_an_admin_action_reads_which_action() {
        let dev = caller(Role::Dev, &[]);

        let refused = may_create_functions(&dev).unwrap_err();

        assert!(
            matches!(&refused, Error::Forbidden(text) if text == "only admins may create functions"),
            "{refused:?}"
        );
        assert!(may_create_functions(&caller(Role::Admin, &[])).is_ok());
    }

    #[test]
    fn naming_another_user_takes_an_admin_and_an_admin_naming_no_one_lists_everyones_keys() {
        let (admin, dev) = (caller(Role::Admin, &[]), caller(Role::Dev, &[]));
        let other = Uuid::now_v7();

        assert_eq!(whose_sessions(&dev, None).unwrap(), dev.user_id);
        assert_eq!(
            whose_sessions(&dev, Some(dev.user_id)).unwrap(),
            dev.user_id
        );
        assert!(whose_sessions(&dev, Some(other)).is_err());
        assert_eq!(whose_sessions(&admin, Some(other)).unwrap(), other);
        assert_eq!(whose_api_keys(&admin, None).unwrap(), None);
        assert_eq!(whose_api_keys(&dev, None).unwrap(), Some(dev.user_id));
    }

    #[test]
    fn the_sql_form_binds_the_caller_and_is_true_for_admins() {
        let dev = caller(Role::Dev, &[Uuid::now_v7()]);
        let admin = caller(Role::Admin, &[]);

        let mut query = QueryBuilder::new("select 1 from functions f where ");
        push_can_see_function(&mut query, &dev, "f");
        let mut as_admin = QueryBuilder::new("select 1 from functions f where ");
        push_can_see_function(&mut as_admin, &admin, "f");

        assert_eq!(
            query.sql(),
            "select 1 from functions f where ((cardinality(f.allowed_users) = 0 and cardinality(f.allowed_groups) = 0) or $1::uuid = any(f.allowed_users) or f.allowed_groups && $2::uuid[])"
        );
        assert_eq!(as_admin.sql(), "select 1 from functions f where true");
    }
}
