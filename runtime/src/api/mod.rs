//! The node as a service: its HTTP API under `/v1` (axum), the OpenAPI document generated
//! from the handlers (utoipa), bearer-token auth, and a graceful drain. Everything here
//! uses only [`Node`]'s public methods.

pub mod auth;
mod cluster;
mod error;
mod health;
mod instances;
mod operate;
mod peers;
mod stream;
mod topics;
mod triggers;
mod url_triggers;
pub mod views;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Tokens, new_token};
pub use error::{ApiError, ErrorBody};

use crate::config::ServerSection;
use crate::node::Node;
use crate::triggers::Triggers;

pub use url_triggers::INSTANCE_HEADER;

// What another edge of the node (the console) reuses: the same reads and checks as the API.
pub use instances::{check_id, check_new_id};
pub(crate) use instances::{list_page, priority_of, record_of};
pub(crate) use operate::flow_views;
pub use triggers::TriggerView;
pub(crate) use triggers::set_paused;

/// Largest request body; a flow's `[limits] input` refuses larger inputs with 413 itself.
const BODY_LIMIT: usize = 16 << 20;

/// What every request handler shares.
pub struct ApiState {
    node: Node,
    tokens: Tokens,
    draining: AtomicBool,
    drain_requested: Notify,
    openapi: OnceLock<String>,
    body_timeout: Duration,
    triggers: Arc<Triggers>,
}

impl ApiState {
    /// State serving `node` to holders of `tokens`.
    pub fn new(node: Node, tokens: Tokens) -> Self {
        ApiState {
            node,
            tokens,
            draining: AtomicBool::new(false),
            drain_requested: Notify::new(),
            openapi: OnceLock::new(),
            body_timeout: Duration::from_secs(30),
            triggers: Triggers::none(),
        }
    }

    /// Serve `triggers` too: URL triggers as routes, all of them under `/v1/triggers`.
    pub fn with_triggers(mut self, triggers: Arc<Triggers>) -> Self {
        self.triggers = triggers;
        self
    }

    /// How long a request may take to send its body (default 30 s).
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// State for a `[server]` section: its tokens and body timeout, and `triggers`.
    pub fn for_server(node: Node, server: &ServerSection, triggers: Arc<Triggers>) -> Self {
        ApiState::new(node, Tokens::from_config(&server.tokens))
            .with_body_timeout(server.body_timeout.0)
            .with_triggers(triggers)
    }

    /// The node served.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The tokens accepted.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The node's triggers.
    pub fn triggers(&self) -> &Arc<Triggers> {
        &self.triggers
    }

    /// Whether the node refuses new work because it drains.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stop admitting work now; [`serve`] then finishes the drain and returns.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.triggers.stop();
        self.drain_requested.notify_one();
    }

    /// Wait until running instances have parked (or `grace` is over), then commit
    /// everything queued. Parked and queued instances stay in the store as running; the
    /// next start resumes them. Returns whether all parked in time.
    pub async fn finish_drain(&self, grace: Duration) -> bool {
        self.start_drain();
        let deadline = Instant::now() + grace;
        let parked = loop {
            let running: usize = self
                .node
                .pools()
                .iter()
                .map(|p| p.stats().snapshot().running)
                .sum();
            if running == 0 {
                break true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "drain: {running} instance(s) still running after the grace period; their journals are kept"
                );
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Err(e) = self.node.journal().sync().await {
            tracing::error!("drain: cannot commit the journal: {e}");
        }
        parked
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice node API",
        description = "Start, follow, cancel and operate flow instances of one Sluice node. Errors are JSON bodies with a stable `code`."
    ),
    modifiers(&BearerToken),
    tags(
        (name = "instances", description = "Start, read and cancel flow instances"),
        (name = "hospital", description = "Instances held for an operator"),
        (name = "node", description = "Pools, flows, health, metrics, drain"),
        (name = "triggers", description = "Triggers, topics and live streams (Server-Sent Events)"),
        (name = "peers", description = "Sessions with flows on other nodes"),
    )
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes and the OpenAPI document describing exactly them.
pub fn router(state: Arc<ApiState>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(instances::start))
        .routes(routes!(instances::list))
        .routes(routes!(instances::get))
        .routes(routes!(instances::result))
        .routes(routes!(instances::journal))
        .routes(routes!(instances::children))
        .routes(routes!(instances::cancel))
        .routes(routes!(operate::hospital))
        .routes(routes!(operate::retry))
        .routes(routes!(operate::kill))
        .routes(routes!(operate::pools))
        .routes(routes!(operate::resize_pool))
        .routes(routes!(operate::flows))
        .routes(routes!(operate::drain))
        .routes(routes!(cluster::cluster))
        .routes(routes!(peers::open))
        .routes(routes!(peers::messages))
        .routes(routes!(peers::list))
        .routes(routes!(triggers::list))
        .routes(routes!(triggers::pause))
        .routes(routes!(triggers::resume))
        .routes(routes!(topics::publish))
        .routes(routes!(stream::topic_events))
        .routes(routes!(stream::instance_events))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .with_state(state.clone())
        .split_for_parts();
    if let Ok(text) = serde_json::to_string_pretty(&doc) {
        let _ = state.openapi.set(text);
    }
    let router = url_triggers::add_routes(router, &state)
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // A body that never finishes times out; every other request is served meanwhile.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.body_timeout,
        ));
    (router, doc)
}

/// Serve `state`'s node on `listener` (the API, and `edges` beside it: routes of other
/// edges such as the console, with no fallback of their own) until `stop` resolves or a
/// drain is requested over the API; then drain (see [`ApiState::finish_drain`]) within
/// `grace` and return.
pub async fn serve(
    state: Arc<ApiState>,
    edges: Router,
    grace: Duration,
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (router, _) = router(state.clone());
    let router = router.merge(edges);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = {
        let state = state.clone();
        async move {
            tokio::select! {
                () = stop => state.start_drain(),
                () = state.drain_requested.notified() => {}
            }
            tracing::info!("draining: new work is refused");
            let parked = state.finish_drain(grace).await;
            tracing::info!(
                "drained ({}); stopping",
                if parked {
                    "every running instance parked"
                } else {
                    "grace period over"
                }
            );
            let _ = drained_tx.send(());
        }
    };
    let serving = axum::serve(listener, router).with_graceful_shutdown(draining);
    // Long-polls still open once the node has drained are cut after a moment.
    let cut = async {
        let _ = drained_rx.await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    tokio::select! {
        served = serving => served,
        () = cut => Ok(()),
    }
}
