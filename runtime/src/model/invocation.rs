//! Who started an instance and how urgently: the project's own forms of the WIT
//! `invocation`, `origin` and `priority`, with one serde form each (the `wit` module
//! converts them to and from the generated bindings).

use serde::{Deserialize, Serialize};

/// Scheduling priority of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// First come, first served.
    #[default]
    Normal,
    /// Goes to the `high-priority` pool when it exists, else ahead of its pool's queue.
    High,
}

/// Who started an instance. Stored as `{"origin": "rpc", "by": "<caller>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "origin", content = "by", rename_all = "lowercase")]
pub enum Origin {
    /// A caller of the API or CLI, by name.
    Rpc(String),
    /// A counterparty, by party name (a session it opened).
    Peer(String),
    /// A parent instance, by id.
    Subflow(String),
    /// A trigger, by name.
    Trigger(String),
}

impl Origin {
    /// `rpc`, `peer`, `subflow` or `trigger`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Rpc(_) => "rpc",
            Origin::Peer(_) => "peer",
            Origin::Subflow(_) => "subflow",
            Origin::Trigger(_) => "trigger",
        }
    }

    /// The caller, party, parent id or trigger name.
    pub fn by(&self) -> &str {
        match self {
            Origin::Rpc(s) | Origin::Peer(s) | Origin::Subflow(s) | Origin::Trigger(s) => s,
        }
    }

    /// The parent's id, when a flow started this one.
    pub fn parent(&self) -> Option<&str> {
        match self {
            Origin::Subflow(parent) => Some(parent),
            _ => None,
        }
    }
}

/// What a flow instance is told about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Instance id.
    pub id: String,
    /// Registered flow name.
    pub flow: String,
    /// Who started it.
    pub origin: Origin,
    /// Its priority.
    pub priority: Priority,
    /// The node's identity (`our-identity`).
    pub our_identity: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_priority_have_one_serde_form() {
        let origin = Origin::Subflow("A.1".into());
        let json = serde_json::to_value(&origin).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "origin": "subflow", "by": "A.1" })
        );
        assert_eq!(serde_json::from_value::<Origin>(json).unwrap(), origin);
        assert_eq!(serde_json::to_value(Priority::High).unwrap(), "high");
        assert!(
            serde_json::from_value::<Origin>(serde_json::json!({ "origin": "x", "by": "" }))
                .is_err()
        );
    }
}
