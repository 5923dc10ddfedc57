//! How ids are derived from the instance and journal position that make them, so a re-run
//! derives the same ids and never starts a child, opens a session or publishes an event twice.

/// The id of the child started by the call at journal `position` of instance `parent`
/// (`index` for each child of a `parallel`).
pub fn child_id(parent: &str, position: u64, index: Option<usize>) -> String {
    match index {
        None => format!("{parent}.{position}"),
        Some(i) => format!("{parent}.{position}.{i}"),
    }
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

    #[test]
    fn ids_derive_both_ends() {
        assert_eq!(initiator_of("01ABC.3"), "01ABC");
        assert_eq!(responder_of("01ABC.3"), "01ABC.3.peer");
        assert_eq!(session_of_responder("01ABC.3.peer"), Some("01ABC.3"));
        assert_eq!(session_of_responder("peer"), None);
    }
}
