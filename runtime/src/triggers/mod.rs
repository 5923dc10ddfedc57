//! Triggers: the ways into a node besides the API. URL triggers (answered by the HTTP
//! service, which asks [`Triggers::http`] for each one's settings and state), event
//! triggers ([`events`]: every event on a topic starts one instance of a flow, exactly once
//! per event and trigger, also across a crash) and schedule triggers ([`schedule`]).
//!
//! Every trigger starts its instances through [`Node::start`] with an
//! [`Origin::Trigger`](crate::model::Origin::Trigger) and never runs on a pool slot: its
//! work is a small tokio task that waits off every pool.

mod events;
pub mod schedule;
mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use schedule::{Clock, FileClock, SystemClock};
pub use state::{TriggerKind, TriggerSnapshot, TriggerState};

use crate::config::{HttpTriggerConfig, TriggersSection};
use crate::node::Node;
use crate::store::{StoreError, Write};

/// A URL trigger: its configuration and its figures.
pub struct HttpTrigger {
    /// As configured.
    pub config: HttpTriggerConfig,
    /// Its figures and whether it is paused.
    pub state: Arc<TriggerState>,
}

/// Every trigger of a node, running.
pub struct Triggers {
    node: Option<Node>,
    /// Set by a drain: no trigger starts anything more.
    stopping: Arc<AtomicBool>,
    http: Vec<Arc<HttpTrigger>>,
    all: Vec<Arc<TriggerState>>,
    by_name: HashMap<String, Arc<TriggerState>>,
}

impl Triggers {
    /// No triggers.
    pub fn none() -> Arc<Self> {
        Arc::new(Triggers {
            node: None,
            stopping: Arc::default(),
            http: Vec::new(),
            all: Vec::new(),
            by_name: HashMap::new(),
        })
    }

    /// Start the triggers of `section` on `node` with the system clock. Call before
    /// [`Node::recover`]: the event triggers' dispatcher must observe every event the
    /// resumed instances publish. Needs a tokio runtime.
    pub fn start(node: &Node, section: &TriggersSection) -> Result<Arc<Self>, StoreError> {
        Self::start_with_clock(node, section, Arc::new(SystemClock))
    }

    /// [`Triggers::start`] with another clock for the schedules (tests).
    pub fn start_with_clock(
        node: &Node,
        section: &TriggersSection,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        // Paused before a restart: paused again before any of its tasks runs.
        let store = node.journal().store();
        let mut paused = HashSet::new();
        let names = (section.http.iter().map(|t| t.name.get_ref()))
            .chain(section.event.iter().map(|t| t.name.get_ref()))
            .chain(section.schedule.iter().map(|t| t.name.get_ref()));
        for name in names {
            if store.cursor(&paused_key(name.as_str()))?.as_deref() == Some("true") {
                tracing::info!("trigger `{name}` stays paused, as before the restart");
                paused.insert(name.as_str().to_string());
            }
        }
        let mut all = Vec::new();
        let http: Vec<Arc<HttpTrigger>> = section
            .http
            .iter()
            .map(|config| {
                let state = TriggerState::new(
                    TriggerKind::Http,
                    config.name.get_ref().as_str(),
                    config.flow.get_ref(),
                    format!("{} {}", config.method, config.path.get_ref()),
                );
                if paused.contains(&state.name) {
                    state.pause();
                }
                all.push(state.clone());
                Arc::new(HttpTrigger {
                    config: config.clone(),
                    state,
                })
            })
            .collect();
        let stopping = Arc::new(AtomicBool::new(false));
        all.extend(events::start(node, &section.event, &paused, &stopping)?);
        all.extend(schedule::start(
            node,
            &section.schedule,
            clock,
            &paused,
            &stopping,
        )?);
        let by_name = all.iter().map(|s| (s.name.clone(), s.clone())).collect();
        Ok(Arc::new(Triggers {
            node: Some(node.clone()),
            stopping,
            http,
            all,
            by_name,
        }))
    }

    /// Pause (`true`) or resume trigger `name`, durably: a restart keeps it so. `None`
    /// when there is no such trigger.
    pub async fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<Arc<TriggerState>>, StoreError> {
        let Some(state) = self.by_name.get(name) else {
            return Ok(None);
        };
        if let Some(node) = &self.node {
            let write = Write::Cursor {
                key: paused_key(name),
                value: paused.to_string(),
            };
            node.journal().write(vec![write]).await?;
        }
        if paused {
            state.pause();
        } else {
            state.resume();
        }
        Ok(Some(state.clone()))
    }

    /// Start nothing more (a drain): events wait in the store's outbox and schedules stop
    /// firing until the node's next start (which then applies their missed-run policy).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// The URL triggers.
    pub fn http(&self) -> &[Arc<HttpTrigger>] {
        &self.http
    }

    /// Every trigger, in the config's order (URL, event, schedule).
    pub fn all(&self) -> &[Arc<TriggerState>] {
        &self.all
    }

    /// The trigger called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<TriggerState>> {
        self.by_name.get(name)
    }
}

/// The store cursor that says whether trigger `name` is paused.
fn paused_key(name: &str) -> String {
    format!("paused:{name}")
}
