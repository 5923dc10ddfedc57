//! The journal encoding round-trips: any sequence of host calls with any answers, recorded
//! through a [`Recorder`] into a store that keeps JSON as text (SQLite), reads back as the
//! same entries, and a recorder over them replays every call with its recorded answer,
//! matches no other call, and has nothing left over.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::calls::{Call, Kind, outcome_from_json, outcomes_from_json};
use super::recorder::Recorder;
use crate::model::{FlowError, Priority};
use crate::store::{Journal, JournalStore, Payload, SqliteStore, encode};

/// A host call with owned arguments (a [`Call`] borrows them).
#[derive(Debug, Clone)]
enum Spec {
    Start(String, Vec<u8>, Option<Priority>),
    Join(String),
    Call(String, Vec<u8>),
    Parallel(String, Vec<Vec<u8>>),
    Cancel(String),
    Now,
    Sleep(u64),
    Random,
    Progress(String),
    Publish(String, Vec<u8>),
    WaitEvent(String, Option<u64>),
    TakeEvent(String),
    Session(String),
    Send(String, Vec<u8>),
    Receive(String),
    Initiator,
}

impl Spec {
    fn call(&self) -> Call<'_> {
        match self {
            Spec::Start(flow, input, priority) => Call::Start {
                flow,
                input,
                priority: *priority,
            },
            Spec::Join(id) => Call::Join { id },
            Spec::Call(flow, input) => Call::Call { flow, input },
            Spec::Parallel(flow, inputs) => Call::Parallel { flow, inputs },
            Spec::Cancel(id) => Call::Cancel { id },
            Spec::Now => Call::Now,
            Spec::Sleep(ms) => Call::Sleep { ms: *ms },
            Spec::Random => Call::Random,
            Spec::Progress(step) => Call::Progress { step },
            Spec::Publish(topic, payload) => Call::Publish { topic, payload },
            Spec::WaitEvent(topic, timeout_ms) => Call::WaitEvent {
                topic,
                timeout_ms: *timeout_ms,
            },
            Spec::TakeEvent(topic) => Call::TakeEvent { topic },
            Spec::Session(party) => Call::Session { party },
            Spec::Send(session, payload) => Call::Send { session, payload },
            Spec::Receive(session) => Call::Receive { session },
            Spec::Initiator => Call::Initiator,
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z.~0-9]{0,12}"]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        any::<String>().prop_map(String::into_bytes),
        Just(br#"{"n": 1, "s": [true, null]}"#.to_vec()),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let priority = prop::option::of(prop_oneof![Just(Priority::Normal), Just(Priority::High)]);
    prop_oneof![
        (text(), bytes(), priority).prop_map(|(f, i, p)| Spec::Start(f, i, p)),
        text().prop_map(Spec::Join),
        (text(), bytes()).prop_map(|(f, i)| Spec::Call(f, i)),
        (text(), prop::collection::vec(bytes(), 0..4)).prop_map(|(f, i)| Spec::Parallel(f, i)),
        text().prop_map(Spec::Cancel),
        Just(Spec::Now),
        any::<u64>().prop_map(Spec::Sleep),
        Just(Spec::Random),
        text().prop_map(Spec::Progress),
        (text(), bytes()).prop_map(|(t, p)| Spec::Publish(t, p)),
        (text(), any::<Option<u64>>()).prop_map(|(t, ms)| Spec::WaitEvent(t, ms)),
        text().prop_map(Spec::TakeEvent),
        text().prop_map(Spec::Session),
        (text(), bytes()).prop_map(|(s, p)| Spec::Send(s, p)),
        text().prop_map(Spec::Receive),
        Just(Spec::Initiator),
    ]
}

fn flow_error() -> impl Strategy<Value = FlowError> {
    prop_oneof![
        text().prop_map(FlowError::Failed),
        Just(FlowError::Cancelled),
        Just(FlowError::TimedOut),
        text().prop_map(FlowError::Rejected),
    ]
}

fn outcome() -> impl Strategy<Value = Result<Payload, FlowError>> {
    prop_oneof![
        bytes().prop_map(|b| Ok(Payload(b))),
        flow_error().prop_map(Err)
    ]
}

/// An answer of the type the hosts journal for `kind`.
fn answer(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Start => prop_oneof![text().prop_map(Ok), flow_error().prop_map(Err)]
            .prop_map(|r: Result<String, FlowError>| encode(&r))
            .boxed(),
        Kind::Join | Kind::Call => outcome().prop_map(|o| encode(&o)).boxed(),
        Kind::Parallel => prop::collection::vec(outcome(), 0..4)
            .prop_map(|o| encode(&o))
            .boxed(),
        Kind::Cancel => prop_oneof![Just(Ok(())), flow_error().prop_map(Err)]
            .prop_map(|r: Result<(), FlowError>| encode(&r))
            .boxed(),
        Kind::Now | Kind::Random | Kind::Sleep => any::<u64>().prop_map(|n| json!(n)).boxed(),
        Kind::WaitEvent => any::<Option<u64>>().prop_map(|d| encode(&d)).boxed(),
        Kind::TakeEvent => prop::option::of(bytes().prop_map(Payload))
            .prop_map(|p| encode(&p))
            .boxed(),
        Kind::Session | Kind::Initiator => (text(), text())
            .prop_map(|(s, p)| json!({ "session": s, "party": p }))
            .boxed(),
        Kind::Send | Kind::Receive => prop_oneof![
            bytes().prop_map(|b| Ok(Some(Payload(b)))),
            text().prop_map(Err)
        ]
        .prop_map(|r: Result<Option<Payload>, String>| encode(&r))
        .boxed(),
        Kind::Progress | Kind::Publish => Just(Value::Null).boxed(),
    }
}

fn calls() -> impl Strategy<Value = Vec<(Spec, Value)>> {
    prop::collection::vec(
        spec().prop_flat_map(|s| {
            let kind = s.call().kind();
            (Just(s), answer(kind))
        }),
        0..24,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_journal_encoding_round_trips(calls in calls()) {
        let store = std::sync::Arc::new(SqliteStore::in_memory().unwrap());
        let journal = Journal::new(store.clone()).unwrap();
        let record = crate::store::InstanceRecord::new("a", "f", "c", b"", "{}".into());
        journal.append(vec![crate::store::Write::Create(record)]).unwrap();
        let mut recorder = Recorder::new("a", journal.clone(), Vec::new());
        for (spec, answer) in &calls {
            recorder.record(&spec.call(), answer).unwrap();
        }
        let entries = store.journal("a").unwrap();
        prop_assert_eq!(entries.len(), calls.len());
        let mut replay = Recorder::new("a", journal, entries.clone());
        for ((spec, answer), entry) in calls.iter().zip(&entries) {
            let call = spec.call();
            prop_assert_eq!(&entry.call, call.name());
            prop_assert!(call.args_match(&entry.args), "{:?} does not match {}", spec, entry.args);
            match call.kind() {
                Kind::Join | Kind::Call => drop(outcome_from_json(&entry.result).unwrap()),
                Kind::Parallel => drop(outcomes_from_json(&entry.result).unwrap()),
                _ => {}
            }
            let replayed = replay.replay(&call).unwrap();
            prop_assert_eq!(replayed.as_ref(), Some(answer));
        }
        prop_assert!(replay.leftover().is_none());
        prop_assert!(!replay.replaying());
    }

    #[test]
    fn a_different_call_is_never_taken_for_the_recorded_one(
        (recorded, answer) in spec().prop_flat_map(|s| { let k = s.call().kind(); (Just(s), answer(k)) }),
        other in spec(),
    ) {
        let journal = Journal::new(std::sync::Arc::new(crate::store::MemoryStore::new())).unwrap();
        let record = crate::store::InstanceRecord::new("a", "f", "c", b"", "{}".into());
        journal.append(vec![crate::store::Write::Create(record)]).unwrap();
        let mut recorder = Recorder::new("a", journal.clone(), Vec::new());
        recorder.record(&recorded.call(), &answer).unwrap();
        let entries = journal.store().journal("a").unwrap();
        let (a, b) = (recorded.call(), other.call());
        let same = a.name() == b.name() && a.args() == b.args();
        let mut replay = Recorder::new("a", journal, entries);
        prop_assert_eq!(replay.replay(&b).is_ok(), same, "{:?} against {:?}", other, recorded);
    }
}
