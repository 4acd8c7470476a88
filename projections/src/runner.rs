//! The running projections: events in (NATS or any [`EventFeed`]), views applied, rows stored in
//! batches, changes broadcast, gRPC served.
//!
//! Invariant: events are applied strictly in position order without gaps (a gap stops the
//! runner); rows are stored and broadcast only after being taken from the views under the same
//! lock that applies events, so every broadcast batch names the position its rows reflect, and
//! what a watcher sees after its snapshot is exactly the rows changed after that snapshot.

use crate::error::ProjectionsError;
use crate::grpc::ViewsApi;
use crate::pb;
use crate::shared::Shared;
use crate::store::Store;
use crate::views::{ViewBatch, ViewSet};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_client::{FollowedEvent, Follower, NatsLogin};
use streamfleet_bus_schemas::{Event, PayloadError, subjects};
use tokio::sync::{RwLock, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often applied changes are stored and broadcast (at most).
const STORE_EVERY: Duration = Duration::from_millis(50);
/// Every this many stores, one is durable (fsync); the others are not.
const DURABLE_EVERY: u32 = 20;
/// Events applied per lock of the views.
const APPLY_BATCH: usize = 1024;
/// Events stored per batch while rebuilding.
const REBUILD_STORE_EVERY: u64 = 20_000;

/// What the projections need to run.
#[derive(Debug, Clone)]
pub struct ProjectionsConfig {
    /// NATS server and user (the `dashboard` role: publish `sf.log.read`; subscribe `_INBOX.dashboard.>`,
    /// `sf.evt.>`, `sf.log.head`).
    pub nats: NatsLogin,
    /// Where the view files live (`<data_dir>/<view>.redb`).
    pub data_dir: PathBuf,
    /// Where gRPC listens; port 0 picks a free port ([`RunningProjections::grpc_addr`]).
    pub grpc_addr: SocketAddr,
    /// The hosts' heartbeat interval: a host or session is late after two of them.
    pub heartbeat_interval: Duration,
    /// The API's certificate and key: with them it speaks TLS only. Required, with `token`,
    /// when `grpc_addr` is beyond loopback.
    pub tls: Option<ApiTls>,
    /// The dashboards' credentials: with it every views and reflection call must carry
    /// `authorization: Bearer <token>` (`UNAUTHENTICATED` otherwise; health stays open).
    pub token: Option<streamfleet_bus_schemas::Secret>,
}

/// Where the views API finds its TLS certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct ApiTls {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// One event for the views: its position, record time and payload (`None`: a type this build
/// does not know or cannot read; only the positions move).
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedEvent {
    /// Global position.
    pub position: u64,
    /// When the log recorded it.
    pub time: DateTime<Utc>,
    /// The payload.
    pub event: Option<Event>,
}

impl SourcedEvent {
    /// Reads a followed event's envelope and payload. An unknown type or unreadable payload is
    /// logged and kept as `None` (the position still counts), so a live view and a rebuild
    /// treat it alike.
    pub fn from_followed(followed: &FollowedEvent) -> SourcedEvent {
        let envelope = match followed.envelope() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(position = followed.position, error = %e, "unreadable event envelope; skipped");
                return SourcedEvent {
                    position: followed.position,
                    time: DateTime::UNIX_EPOCH,
                    event: None,
                };
            }
        };
        let event = match Event::from_parts(&envelope.body.event_type, envelope.body.data) {
            Ok(event) => Some(event),
            Err(PayloadError::UnknownType(t)) => {
                tracing::debug!(position = followed.position, r#type = %t, "unknown event type; skipped");
                None
            }
            Err(e) => {
                tracing::warn!(position = followed.position, error = %e, "unreadable event payload; skipped");
                None
            }
        };
        SourcedEvent {
            position: followed.position,
            time: envelope.body.time,
            event,
        }
    }
}

/// Where the views get their events: a channel of events in position order, and the log's
/// head as last known (for lag and health).
#[derive(Debug)]
pub struct EventFeed {
    events: mpsc::Receiver<Result<SourcedEvent, ProjectionsError>>,
    head: watch::Receiver<Option<u64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The sending side of [`EventFeed::channel`].
#[derive(Debug, Clone)]
pub struct FeedSender {
    events: mpsc::Sender<Result<SourcedEvent, ProjectionsError>>,
    head: watch::Sender<Option<u64>>,
}

impl FeedSender {
    /// Sends the event at `position` (positions must follow each other from 1, or from where
    /// the views stand) and raises the head to it.
    pub async fn send(
        &self,
        position: u64,
        time: DateTime<Utc>,
        event: Event,
    ) -> Result<(), ProjectionsError> {
        self.send_sourced(SourcedEvent {
            position,
            time,
            event: Some(event),
        })
        .await
    }

    /// Sends one sourced event and raises the head to its position.
    pub async fn send_sourced(&self, event: SourcedEvent) -> Result<(), ProjectionsError> {
        let position = event.position;
        self.events
            .send(Ok(event))
            .await
            .map_err(|_| ProjectionsError::Task("the views stopped".into()))?;
        self.head
            .send_modify(|h| *h = Some(h.map_or(position, |h| h.max(position))));
        Ok(())
    }

    /// Announces the log's head (e.g. 0 for an empty log).
    pub fn set_head(&self, head: u64) {
        self.head.send_replace(Some(head));
    }
}

impl EventFeed {
    /// A feed fed by hand (tests, replays): events go in through the [`FeedSender`].
    pub fn channel(capacity: usize) -> (FeedSender, EventFeed) {
        let (events_tx, events) = mpsc::channel(capacity.max(1));
        let (head_tx, head) = watch::channel(None);
        (
            FeedSender {
                events: events_tx,
                head: head_tx,
            },
            EventFeed {
                events,
                head,
                tasks: Vec::new(),
            },
        )
    }

    /// Follows the log over NATS from `from` (1: everything), and the head announced on
    /// `sf.log.head`.
    pub async fn nats(
        client: async_nats::Client,
        from: u64,
    ) -> Result<EventFeed, ProjectionsError> {
        let mut heads = client.subscribe(subjects::LOG_HEAD).await?;
        let mut follower = Follower::start(client, from).await?;
        let (sender, mut feed) = EventFeed::channel(4 * APPLY_BATCH);
        let head = sender.head.clone();
        feed.tasks.push(tokio::spawn(async move {
            while let Some(msg) = heads.next().await {
                let announced = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if let Some(h) = announced {
                    head.send_modify(|cur| *cur = Some(cur.map_or(h, |c| c.max(h))));
                }
            }
        }));
        let events = sender.events;
        feed.tasks.push(tokio::spawn(async move {
            loop {
                let next = follower
                    .next()
                    .await
                    .map(|f| SourcedEvent::from_followed(&f))
                    .map_err(ProjectionsError::from);
                let failed = next.is_err();
                if events.send(next).await.is_err() || failed {
                    return;
                }
            }
        }));
        Ok(feed)
    }
}

/// Running projections: the applier and the gRPC server.
pub struct RunningProjections {
    grpc_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    applier: JoinHandle<Result<(), ProjectionsError>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl std::fmt::Debug for RunningProjections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProjections")
            .field("grpc_addr", &self.grpc_addr)
            .field("position", &self.position())
            .finish()
    }
}

impl RunningProjections {
    /// The address gRPC listens on (the bound port when the configured one was 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The lowest position stored by all views.
    pub fn position(&self) -> u64 {
        *self.shared.stored.borrow()
    }

    /// Whether the views are still written to their files: false once a write failed (a full
    /// disk); they go on following and serving from memory, and a restart continues from the
    /// files' consistent checkpoints.
    pub fn storing(&self) -> bool {
        *self.shared.storing.borrow()
    }

    /// Waits until the views stop being written (a write failed).
    pub async fn wait_until_not_storing(&self) {
        let mut rx = self.shared.storing.subscribe();
        let _ = rx.wait_for(|storing| !*storing).await;
    }

    /// Waits until every view has stored `position` (forever if the feed never gets there).
    pub async fn wait_for_position(&self, position: u64) {
        let mut rx = self.shared.stored.subscribe();
        let _ = rx.wait_for(|p| *p >= position).await;
    }

    /// Stops: stores what is applied (durably), then stops the gRPC server.
    pub async fn shutdown(mut self) -> Result<(), ProjectionsError> {
        let _ = self.stop.send(true);
        let applied = join(self.applier).await;
        // Graceful shutdown waits for clients to close their connections; a dashboard that
        // keeps one open gets [`SERVER_GRACE`], then the server stops anyway.
        let served = match tokio::time::timeout(SERVER_GRACE, &mut self.server).await {
            Ok(done) => done
                .map_err(|e| ProjectionsError::Task(e.to_string()))?
                .map_err(ProjectionsError::from),
            Err(_) => {
                tracing::info!("gRPC clients still connected after the grace period; closing");
                self.server.abort();
                Ok(())
            }
        };
        applied?;
        served?;
        Ok(())
    }

    /// Runs until `shutdown` completes or the applier stops by itself (its error, if any).
    async fn until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ProjectionsError> {
        tokio::select! {
            _ = shutdown => self.shutdown().await,
            applied = &mut self.applier => {
                let _ = self.stop.send(true);
                let served = join(self.server).await;
                applied.map_err(|e| ProjectionsError::Task(e.to_string()))??;
                served?;
                Ok(())
            }
        }
    }
}

/// How long a stopping server waits for its clients to disconnect.
const SERVER_GRACE: Duration = Duration::from_secs(2);

async fn join<T, E>(handle: JoinHandle<Result<T, E>>) -> Result<T, ProjectionsError>
where
    ProjectionsError: From<E>,
{
    handle
        .await
        .map_err(|e| ProjectionsError::Task(e.to_string()))?
        .map_err(ProjectionsError::from)
}

/// Connects to NATS, follows the log from the lowest checkpoint and serves gRPC until
/// `shutdown` completes (then stores durably and returns) or following fails.
pub async fn run(
    config: ProjectionsConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectionsError> {
    start(config).await?.until(shutdown).await
}

/// Starts the projections over NATS and returns once gRPC listens.
pub async fn start(config: ProjectionsConfig) -> Result<RunningProjections, ProjectionsError> {
    let (store, views) = open_store(&config.data_dir).await?;
    let client = streamfleet_bus_client::connect(&config.nats).await?;
    let feed = EventFeed::nats(client, views.position() + 1).await?;
    start_parts(config, store, views, feed).await
}

/// Starts the projections on events from `feed` instead of NATS (`config.nats` is unused):
/// views, store and gRPC as in [`start`]. The feed must start at or before the lowest
/// checkpoint + 1; events the views already hold are skipped.
pub async fn start_with_source(
    config: ProjectionsConfig,
    feed: EventFeed,
) -> Result<RunningProjections, ProjectionsError> {
    let (store, views) = open_store(&config.data_dir).await?;
    start_parts(config, store, views, feed).await
}

async fn open_store(dir: &Path) -> Result<(Store, ViewSet), ProjectionsError> {
    let dir = dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .map_err(|e| ProjectionsError::Task(e.to_string()))??;
    Ok(opened)
}

async fn start_parts(
    config: ProjectionsConfig,
    store: Store,
    views: ViewSet,
    feed: EventFeed,
) -> Result<RunningProjections, ProjectionsError> {
    if !config.grpc_addr.ip().is_loopback() && (config.tls.is_none() || config.token.is_none()) {
        return Err(ProjectionsError::Exposed {
            addr: config.grpc_addr,
        });
    }
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ProjectionsError::Tls {
                path: path.clone(),
                source,
            })
        };
        let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|source| ProjectionsError::Bind {
            addr: config.grpc_addr,
            source,
        })?;
    let grpc_addr = listener
        .local_addr()
        .map_err(|source| ProjectionsError::Bind {
            addr: config.grpc_addr,
            source,
        })?;
    let (stop, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        stored: watch::channel(views.position()).0,
        storing: watch::channel(true).0,
        views: RwLock::new(views),
        changes: broadcast::channel(1024).0,
        head: feed.head.clone(),
        heartbeat_interval: config.heartbeat_interval,
        stop: stop_rx.clone(),
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, false).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let api = pb::views_server::ViewsServer::new(ViewsApi::new(shared.clone()));
    let check = BearerCheck(config.token.as_ref().map(|t| t.hash()));
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(
        builder
            .add_service(health_service)
            .add_service(tonic::service::interceptor::InterceptedService::new(
                reflection,
                check.clone(),
            ))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                api, check,
            ))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                },
            ),
    );
    tracing::info!("grpc listening on {grpc_addr}");

    let applier = tokio::spawn(apply_loop(
        shared.clone(),
        Arc::new(store),
        feed,
        stop_rx,
        health,
    ));
    Ok(RunningProjections {
        grpc_addr,
        shared,
        stop,
        applier,
        server,
    })
}

/// Admits a call when no token is configured, or when it carries `authorization: Bearer <token>`
/// (compared by hash, so the comparison takes the same time whatever the guess).
#[derive(Clone)]
struct BearerCheck(Option<String>);

impl tonic::service::Interceptor for BearerCheck {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(expected) = &self.0 else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(streamfleet_bus_schemas::secret_hash);
        if presented.as_ref() == Some(expected) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(
                "the views need the dashboards' token: authorization: Bearer <token>",
            ))
        }
    }
}

async fn set_health(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    health
        .set_service_status(
            <pb::views_server::ViewsServer<ViewsApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Applies received events in order: duplicates are skipped, a gap is an error.
fn apply_events(
    views: &mut ViewSet,
    events: &mut Vec<Result<SourcedEvent, ProjectionsError>>,
    last: &mut u64,
) -> Result<(), ProjectionsError> {
    for e in events.drain(..) {
        let e = e?;
        if e.position <= *last {
            continue;
        }
        if e.position != *last + 1 {
            return Err(ProjectionsError::Gap {
                expected: *last + 1,
                got: e.position,
            });
        }
        views.apply(e.position, e.time, e.event.as_ref());
        *last = e.position;
    }
    Ok(())
}

/// Takes the views' changes since the last take, and the position they reach.
async fn take_changes(shared: &Shared) -> (Arc<Vec<ViewBatch>>, u64) {
    let mut views = shared.views.write().await;
    (Arc::new(views.take_batches()), views.position())
}

/// Writes taken changes into the views' files.
async fn write_changes(
    store: &Arc<Store>,
    batches: &Arc<Vec<ViewBatch>>,
    durable: bool,
) -> Result<(), ProjectionsError> {
    let (store, written) = (store.clone(), batches.clone());
    tokio::task::spawn_blocking(move || {
        store.write(&written, durable)?;
        if durable {
            store.sync()?;
        }
        Ok::<_, crate::StoreError>(())
    })
    .await
    .map_err(|e| ProjectionsError::Task(e.to_string()))??;
    Ok(())
}

/// Takes the views' changes and writes them; returns them and the lowest position stored.
async fn store_changes(
    shared: &Shared,
    store: &Arc<Store>,
    durable: bool,
) -> Result<(Arc<Vec<ViewBatch>>, u64), ProjectionsError> {
    let (batches, position) = take_changes(shared).await;
    write_changes(store, &batches, durable).await?;
    Ok((batches, position))
}

async fn apply_loop(
    shared: Arc<Shared>,
    store: Arc<Store>,
    mut feed: EventFeed,
    mut stop: watch::Receiver<bool>,
    health: HealthReporter,
) -> Result<(), ProjectionsError> {
    let mut last = shared.views.read().await.position();
    let mut buf = Vec::with_capacity(APPLY_BATCH);
    let (mut pending, mut stores, mut serving) = (false, 0u32, false);
    let mut last_store = Instant::now();
    let mut head_open = true;
    // Whether this run still writes the views' files (a failed write stops it; see below).
    let mut storing = true;
    let result: Result<(), ProjectionsError> = loop {
        tokio::select! {
            biased;
            changed = stop.changed() => if changed.is_err() || *stop.borrow() {
                break Ok(());
            },
            n = feed.events.recv_many(&mut buf, APPLY_BATCH) => {
                if n == 0 {
                    break Ok(());
                }
                let applied = apply_events(&mut *shared.views.write().await, &mut buf, &mut last);
                pending = true;
                if let Err(e) = applied {
                    break Err(e);
                }
                if last_store.elapsed() < STORE_EVERY {
                    continue;
                }
            }
            _ = tokio::time::sleep_until(last_store + STORE_EVERY), if pending => {}
            changed = feed.head.changed(), if head_open => head_open = changed.is_ok(),
        }
        if pending {
            stores += 1;
            let (batches, position) = take_changes(&shared).await;
            if storing {
                match write_changes(&store, &batches, stores % DURABLE_EVERY == 0).await {
                    Ok(()) => {
                        shared.stored.send_replace(position);
                    }
                    Err(e) => {
                        // A full disk, or failing storage. The views go on following and
                        // serving from memory; their files stay as of their last checkpoint
                        // (each file's batch is one transaction), so a restart continues from
                        // there and folds the same rows again. Writing later batches without this
                        // one would not be consistent, so nothing more is written in this run.
                        tracing::error!(error = %e, position, "the views cannot be stored: they serve from memory, stored as of an earlier position; restart the projections once the storage is back");
                        storing = false;
                        shared.storing.send_replace(false);
                    }
                }
            }
            let _ = shared.changes.send(batches);
            pending = false;
            last_store = Instant::now();
        }
        let caught_up = feed
            .head
            .borrow()
            .is_some_and(|h| *shared.stored.borrow() >= h);
        if caught_up != serving {
            serving = caught_up;
            set_health(&health, serving).await;
        }
    };
    set_health(&health, false).await;
    if !storing {
        return result;
    }
    let stored = store_changes(&shared, &store, true).await;
    if let Ok((batches, position)) = &stored {
        shared.stored.send_replace(*position);
        let _ = shared.changes.send(batches.clone());
    }
    result.and(stored.map(|_| ()))
}

/// Builds every view from the first position into `dir` (meant to be empty; view files
/// already there are continued from their checkpoints), following the log over `client`, and
/// stops once `until_position` is stored. Returns the position stored. Waits for the log to
/// reach `until_position`.
pub async fn rebuild(
    client: async_nats::Client,
    dir: &Path,
    until_position: u64,
) -> Result<u64, ProjectionsError> {
    let (store, views) = open_store(dir).await?;
    let feed = EventFeed::nats(client, views.position() + 1).await?;
    rebuild_parts(store, views, feed, until_position).await
}

/// [`rebuild`] from a hand-fed [`EventFeed`]; stops at `until_position` or when the feed ends.
pub async fn rebuild_from(
    feed: EventFeed,
    dir: &Path,
    until_position: u64,
) -> Result<u64, ProjectionsError> {
    let (store, views) = open_store(dir).await?;
    rebuild_parts(store, views, feed, until_position).await
}

async fn rebuild_parts(
    store: Store,
    views: ViewSet,
    mut feed: EventFeed,
    until: u64,
) -> Result<u64, ProjectionsError> {
    let mut last = views.position();
    let (store, shared) = (
        Arc::new(store),
        Shared {
            stored: watch::channel(last).0,
            storing: watch::channel(true).0,
            views: RwLock::new(views),
            changes: broadcast::channel(1).0,
            head: feed.head.clone(),
            heartbeat_interval: Duration::ZERO,
            stop: watch::channel(false).1,
        },
    );
    let mut since_store = 0u64;
    let mut buf = Vec::with_capacity(APPLY_BATCH);
    while last < until {
        let room = usize::try_from(until - last).unwrap_or(APPLY_BATCH);
        if feed.events.recv_many(&mut buf, APPLY_BATCH.min(room)).await == 0 {
            break;
        }
        let before = last;
        let mut views = shared.views.write().await;
        apply_events(&mut views, &mut buf, &mut last)?;
        drop(views);
        since_store += last - before;
        if since_store >= REBUILD_STORE_EVERY {
            store_changes(&shared, &store, false).await?;
            since_store = 0;
        }
    }
    let (_, position) = store_changes(&shared, &store, true).await?;
    Ok(position)
}
