//! The identity a request carries through the pipeline once it is authenticated. It is a typed
//! value handed from step to step, never a request header, so no client can forge it.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The extra key under which the API server libraries record which credential was used.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// Who the caller is, in the shape of the API server's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// Applies the API server's authenticated-group adder: `system:authenticated` is appended
    /// unless the user is anonymous or already carries either of the two system groups.
    pub fn with_authenticated_group(mut self) -> Self {
        let has_system_group = self
            .groups
            .iter()
            .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP);
        if self.name != ANONYMOUS_USER && !has_system_group {
            self.groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        self
    }
}

static ANONYMOUS: LazyLock<Arc<UserInfo>> = LazyLock::new(|| {
    Arc::new(UserInfo {
        name: ANONYMOUS_USER.to_owned(),
        groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
        ..UserInfo::default()
    })
});

/// The anonymous identity, shared so that unauthenticated requests allocate nothing.
pub fn anonymous() -> Arc<UserInfo> {
    ANONYMOUS.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: "u-1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::from([("k".to_string(), vec!["v".to_string()])]),
        }
    }

    #[test]
    fn adds_authenticated_group_and_keeps_everything_else() {
        let u = user("alice", &["g1"]).with_authenticated_group();
        assert_eq!(u.groups, ["g1", AUTHENTICATED_GROUP]);
        assert_eq!(u.uid, "u-1");
        assert_eq!(u.extra["k"], ["v"]);
    }

    #[test]
    fn does_not_add_twice_or_to_unauthenticated_or_anonymous() {
        let u = user("alice", &[AUTHENTICATED_GROUP]).with_authenticated_group();
        assert_eq!(u.groups, [AUTHENTICATED_GROUP]);
        let u = user("alice", &[UNAUTHENTICATED_GROUP]).with_authenticated_group();
        assert_eq!(u.groups, [UNAUTHENTICATED_GROUP]);
        let u = user(ANONYMOUS_USER, &[]).with_authenticated_group();
        assert!(u.groups.is_empty());
    }

    #[test]
    fn anonymous_identity() {
        let a = anonymous();
        assert_eq!(a.name, "system:anonymous");
        assert_eq!(a.groups, ["system:unauthenticated"]);
        assert!(a.uid.is_empty() && a.extra.is_empty());
    }
}
