//! Who may read or write a knowledge base (`[knowledge] access`), kept equal to the
//! configuration: the names resolved against the server, the base's grants compared,
//! and `POST /api/v1/knowledge/{id}/access/update` sent only when they differ.
//!
//! Shapes read in Open WebUI 0.12.4 (`routers/knowledge.py`, `models/access_grants.py`,
//! `routers/users.py`, `routers/groups.py`): a grant is `{principal_type: "user" |
//! "group", principal_id, permission: "read" | "write"}`; the update replaces every
//! grant of the base; a permission check matches the permission exactly, so a writer
//! needs a `read` grant too to see the base. `GET /knowledge/{id}` answers the grants.
//!
//! [`keep_access`] is the one way ragd sets a base's access, for a pipeline's own base
//! and for an external one alike.

use std::collections::BTreeSet;

use super::client::{Grant, OpenWebUi};
use super::error::OwuiError;

/// What a rule grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// See and search the base.
    Read,
    /// Read, and change its files and settings.
    Write,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
        }
    }
}

/// Whom a rule names, by the name an operator knows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// A user by e-mail address (the login, unique) or display name (must name one
    /// user only).
    User(String),
    /// A group by name (must name one group only).
    Group(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::User(n) => write!(f, "user {n:?}"),
            Principal::Group(n) => write!(f, "group {n:?}"),
        }
    }
}

/// One entry of `[knowledge] access`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessRule {
    pub principal: Principal,
    pub permission: Permission,
}

/// Why the access could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "[knowledge] access: Open WebUI has no user {0:?} (by e-mail address or name); \
         add the account in Open WebUI (Admin Panel → Users) or correct the name"
    )]
    UnknownUser(String),
    #[error(
        "[knowledge] access: Open WebUI has no group {0:?}; create it in Open WebUI \
         (Admin Panel → Users → Groups) or correct the name"
    )]
    UnknownGroup(String),
    #[error(
        "[knowledge] access: {principal} names {count} accounts in Open WebUI; use the \
         e-mail address (users) or give the groups distinct names"
    )]
    Ambiguous { principal: Principal, count: usize },
    #[error("knowledge-base access: {0}")]
    Server(#[from] OwuiError),
}

/// The grants `rules` mean on this server: each name looked up (users by
/// `users/search`, groups by `groups/`), a `write` rule granting `read` too.
/// Every name is checked; the first unknown or ambiguous one is the error.
pub async fn resolve(
    client: &OpenWebUi,
    rules: &[AccessRule],
) -> Result<BTreeSet<Grant>, AccessError> {
    let mut grants = BTreeSet::new();
    let needs_groups = rules
        .iter()
        .any(|r| matches!(r.principal, Principal::Group(_)));
    let groups = if needs_groups {
        client.groups().await?
    } else {
        Vec::new()
    };
    for rule in rules {
        let (kind, id) = match &rule.principal {
            Principal::User(name) => {
                let found = client.search_users(name).await?;
                // The e-mail address is unique; a display name may not be.
                let by_email: Vec<_> = found
                    .iter()
                    .filter(|u| u.email.eq_ignore_ascii_case(name))
                    .collect();
                let by_name: Vec<_> = found.iter().filter(|u| u.name == *name).collect();
                let chosen = if by_email.len() == 1 {
                    by_email
                } else {
                    by_name
                };
                match chosen.as_slice() {
                    [one] => ("user", one.id.clone()),
                    [] => return Err(AccessError::UnknownUser(name.clone())),
                    many => {
                        return Err(AccessError::Ambiguous {
                            principal: rule.principal.clone(),
                            count: many.len(),
                        });
                    }
                }
            }
            Principal::Group(name) => {
                let matching: Vec<_> = groups.iter().filter(|g| g.name == *name).collect();
                match matching.as_slice() {
                    [one] => ("group", one.id.clone()),
                    [] => return Err(AccessError::UnknownGroup(name.clone())),
                    many => {
                        return Err(AccessError::Ambiguous {
                            principal: rule.principal.clone(),
                            count: many.len(),
                        });
                    }
                }
            }
        };
        let mut grant = |permission: Permission| {
            grants.insert(Grant {
                principal_type: kind.to_owned(),
                principal_id: id.clone(),
                permission: permission.as_str().to_owned(),
            })
        };
        grant(Permission::Read);
        if rule.permission == Permission::Write {
            grant(Permission::Write);
        }
    }
    Ok(grants)
}

/// Make the base's grants equal to `rules`: resolved, compared with what the
/// base has, and replaced (one `access/update`) only when they differ.
/// Idempotent; returns whether it changed anything. Grants the rules do not
/// name (given by hand, or public access) are removed: the configuration is the
/// whole list.
pub async fn keep_access(
    client: &OpenWebUi,
    knowledge_id: &str,
    rules: &[AccessRule],
) -> Result<bool, AccessError> {
    let wanted = resolve(client, rules).await?;
    let current: BTreeSet<Grant> = client
        .get_knowledge(knowledge_id)
        .await?
        .access_grants
        .into_iter()
        .collect();
    if current == wanted {
        return Ok(false);
    }
    client.update_access(knowledge_id, &wanted).await?;
    tracing::info!(
        knowledge_id,
        grants = wanted.len(),
        "knowledge-base access set"
    );
    Ok(true)
}
