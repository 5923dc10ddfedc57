//! How ids are derived from the instance and journal position that make them, so a re-run
//! derives the same ids and never starts a child, opens a session or publishes an event twice.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest child id written as `<parent>.<position>`; past it a child's id is its
/// root's id and a digest of that path, so ids stay short however deep a tree grows.
pub const MAX_DOTTED_ID: usize = 64;

/// Marks a digested child id (`<root>.~<digest>`); no position starts with it.
const DIGEST_MARK: char = '~';

/// How an instance derives the ids of its children. Kept in the instance's stored start,
/// so an instance recorded by an earlier version re-derives exactly the ids it gave then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdScheme {
    /// `<parent>.<position>` at any length: instances recorded before ids were bounded
    /// (their stored start names no scheme).
    #[default]
    Dotted,
    /// `<parent>.<position>` up to [`MAX_DOTTED_ID`] characters, else `<root>.~<digest>`:
    /// every instance started by this version.
    Bounded,
}

/// The id of the child started by the call at journal `position` of instance `parent`
/// (`index` for each child of a `parallel`), in `parent`'s scheme.
pub fn child_id(scheme: IdScheme, parent: &str, position: u64, index: Option<usize>) -> String {
    let dotted = match index {
        None => format!("{parent}.{position}"),
        Some(i) => format!("{parent}.{position}.{i}"),
    };
    if scheme == IdScheme::Dotted || dotted.len() <= MAX_DOTTED_ID {
        return dotted;
    }
    // The whole path goes into the digest, so two positions never share an id; 128 bits
    // keep a collision out of reach for any tree a node will ever hold.
    let digest = Sha256::digest(dotted.as_bytes());
    let root = parent.split('.').next().unwrap_or(parent);
    format!("{root}.{DIGEST_MARK}{}", hex::encode(&digest[..16]))
}

/// The id of the session opened by the call at journal `position` of instance `initiator`.
pub fn session_id(initiator: &str, position: u64) -> String {
    format!("{initiator}.{position}")
}

/// The id of the event published by the call at journal `position` of instance `publisher`.
pub fn event_id(publisher: &str, position: u64) -> String {
    format!("{publisher}.{position}")
}

/// The id of the instance that opened session `id`.
pub fn initiator_of(session: &str) -> &str {
    session.rsplit_once('.').map_or(session, |(id, _)| id)
}

/// The id of the responder of session `id`.
pub fn responder_of(session: &str) -> String {
    format!("{session}.peer")
}

/// The session a responder instance `id` answers, if its id is a responder's.
pub fn session_of_responder(id: &str) -> Option<&str> {
    id.strip_suffix(".peer").filter(|s| s.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "01KB0000000000000000000000";

    #[test]
    fn ids_derive_both_ends() {
        assert_eq!(initiator_of("01ABC.3"), "01ABC");
        assert_eq!(responder_of("01ABC.3"), "01ABC.3.peer");
        assert_eq!(session_of_responder("01ABC.3.peer"), Some("01ABC.3"));
        assert_eq!(session_of_responder("peer"), None);
    }

    #[test]
    fn short_ids_are_the_same_in_both_schemes() {
        for scheme in [IdScheme::Dotted, IdScheme::Bounded] {
            assert_eq!(child_id(scheme, ROOT, 3, None), format!("{ROOT}.3"));
            assert_eq!(child_id(scheme, ROOT, 3, Some(7)), format!("{ROOT}.3.7"));
        }
    }

    #[test]
    fn bounded_ids_stay_short_at_any_depth() {
        let mut dotted = ROOT.to_string();
        let mut bounded = ROOT.to_string();
        let mut seen = std::collections::HashSet::new();
        for depth in 0..10_000 {
            dotted = child_id(IdScheme::Dotted, &dotted, 2, None);
            bounded = child_id(IdScheme::Bounded, &bounded, 2, None);
            assert!(bounded.len() <= MAX_DOTTED_ID, "depth {depth}: {bounded}");
            assert!(
                bounded.starts_with(ROOT),
                "the root stays visible: {bounded}"
            );
            assert!(
                seen.insert(bounded.clone()),
                "depth {depth} repeats {bounded}"
            );
        }
        assert_eq!(dotted.len(), ROOT.len() + 2 * 10_000);
        // Derivation is a function of the parent and position: a re-run gets the same id.
        let parent = child_id(
            IdScheme::Bounded,
            &format!("{ROOT}{}", ".1".repeat(30)),
            4,
            None,
        );
        assert_eq!(
            child_id(IdScheme::Bounded, &parent, 9, Some(2)),
            child_id(IdScheme::Bounded, &parent, 9, Some(2))
        );
        assert_ne!(
            child_id(IdScheme::Bounded, &parent, 9, Some(2)),
            child_id(IdScheme::Bounded, &parent, 9, Some(3))
        );
    }

    #[test]
    fn the_scheme_of_an_old_record_is_dotted() {
        #[derive(Deserialize)]
        struct Meta {
            #[serde(default)]
            ids: IdScheme,
        }
        let old: Meta = serde_json::from_str("{}").unwrap();
        assert_eq!(old.ids, IdScheme::Dotted);
        let new: Meta = serde_json::from_str(r#"{"ids":"bounded"}"#).unwrap();
        assert_eq!(new.ids, IdScheme::Bounded);
    }
}
