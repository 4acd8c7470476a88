//! Typed identifiers: one type per kind of thing the fleet names (token, session, host, app,
//! user, group, region, instance, node, migration), so a host id cannot be passed where a
//! session id is meant.
//!
//! Invariant: on the wire every identifier is a plain JSON string (`#[serde(transparent)]`), so
//! the JSON and the JSON Schemas are exactly those of the `String` fields they replace; what an
//! identifier may contain is checked by the deciders, which name the offending field.
//!
//! ```
//! use streamfleet_bus_schemas::ids::{HostId, SessionId};
//! let host = HostId::from("h1");
//! assert_eq!(host, "h1");
//! assert_eq!(serde_json::to_string(&host).unwrap(), r#""h1""#);
//! let session: SessionId = serde_json::from_str(r#""s-9""#).unwrap();
//! assert_eq!(session.as_str(), "s-9");
//! assert_eq!(format!("session-{session}"), "session-s-9");
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier's text, by value.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(text.to_owned())
            }
        }

        impl From<&String> for $name {
            fn from(text: &String) -> Self {
                Self(text.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

identifier!(
    /// A token's id (not the token itself): its stream is `token-<id>`.
    TokenId
);
identifier!(
    /// A streaming session: its stream is `session-<id>`.
    SessionId
);
identifier!(
    /// A host that runs an app's sessions: its stream is `host-<id>`.
    HostId
);
identifier!(
    /// An application: its stream is `app-<id>`.
    AppId
);
identifier!(
    /// An entitled user.
    UserId
);
identifier!(
    /// A group (party, multi-tenant instance) whose sessions are placed together.
    GroupId
);
identifier!(
    /// A region of the cloud (`eu-west`, `us-east`, …).
    RegionId
);
identifier!(
    /// A virtual machine or container instance.
    InstanceId
);
identifier!(
    /// A node of a distributed service (file-system master, chunk server, …).
    NodeId
);
identifier!(
    /// A distributed file system: its stream is `dfs-<id>`.
    FileSystemId
);
identifier!(
    /// A migration of an instance between servers: its stream is `migration-<id>`.
    MigrationId
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn schema_is_a_plain_string() {
        let typed = serde_json::to_value(schemars::schema_for!(HostId)).unwrap();
        let plain = serde_json::to_value(schemars::schema_for!(String)).unwrap();
        assert_eq!(typed.get("type"), plain.get("type"));
        assert_eq!(typed.get("type"), Some(&serde_json::json!("string")));
    }

    #[test]
    fn a_map_keyed_by_id_is_looked_up_by_text() {
        let mut sessions = HashMap::new();
        sessions.insert(SessionId::from("s1"), 3);
        assert_eq!(sessions.get("s1"), Some(&3));
        assert_eq!(sessions.get("s2"), None);
    }

    #[test]
    fn debug_prints_the_text_only() {
        assert_eq!(format!("{:?}", AppId::from("chess")), r#""chess""#);
    }
}
