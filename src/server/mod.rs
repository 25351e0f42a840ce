//! Builds the pingora server: listeners (TLS terminated by the connection gate), the proxy service,
//! and the control runtime that runs reloads, health checks and DNS refreshes.

mod bind;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::observe::access_log::AccessLog;
use crate::observe::audit::Audit;
use crate::observe::trace::Tracer;
use crate::proxy::conn::ConnGate;
use crate::proxy::in_flight;
use crate::proxy::Proxy;
use crate::reload::{summary, Reloader};
use crate::snapshot::{ServerSettings, SharedSnapshot, Snapshot};
use crate::tls::listener::TlsTerminator;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::{L4BufferSettings, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::ExecutionPhase;

/// How the process was asked to start.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Take over the listening sockets of a running menshen (zero-downtime upgrade).
    pub upgrade: bool,
}

/// Runs the proxy on `snapshot` until shutdown. Never returns.
pub fn run(snapshot: Snapshot, opts: RunOptions) -> anyhow::Result<()> {
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("menshen-control")
        .enable_all()
        .build()?;
    control.block_on(snapshot.discover_upstreams());
    snapshot.start_background(control.handle());
    snapshot.warn_expiring();
    log_startup_summary(&snapshot);
    // A takedown added while menshen was down must not leave its responses in the disk cache.
    crate::reload::purge_taken_down("start", &snapshot);

    // A binary upgrade takes the sockets over from the running process: they are meant to be
    // held.
    if !opts.upgrade {
        bind::check(snapshot.listeners())?;
    }
    let mut server = pingora_server(&snapshot.server, opts.upgrade);
    let state: SharedSnapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    // Connections to backends (pingora's connector) use rustls' defaults; the TLS listeners
    // have the policy's own configuration.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let access_log = access_log(&mut server, &state)?;
    let audit = audit_log(&mut server, &state)?;
    if let (Some(audit), true) = (&audit, opts.upgrade) {
        audit.record(
            "upgrade",
            "local",
            "started",
            "new binary started with --upgrade: taking over the listening sockets",
        );
    }
    let tracer = tracer(&state)?;
    add_proxy_services(&mut server, &state, &access_log, &tracer)?;
    // OCSP responses are read and fetched on a thread of their own, never on the data path.
    crate::tls::ocsp::stapler::start(state.clone())?;

    let reloader = Reloader::new(state.clone(), control.handle().clone());
    if let Some(audit) = &audit {
        reloader.set_audit(audit.clone());
    }
    reloader.start();
    let admin = match state.load().admin.clone() {
        Some(config) => {
            let admin = Admin::new(
                state.clone(),
                reloader.clone(),
                access_log.clone(),
                audit.clone(),
            );
            start_admin(&control, &server, &admin, config.addr, opts.upgrade)?;
            Some(admin)
        }
        None => None,
    };
    let phases = server.watch_execution_phase();
    control.spawn(drain(phases, admin, (access_log.clone(), audit), tracer));
    // The control runtime must outlive the server; run_forever exits the process.
    let _control = control;
    server.run_forever()
}

/// The pingora server with `[server]`'s threads, grace period and upgrade files.
fn pingora_server(settings: &ServerSettings, upgrade: bool) -> Server {
    // pingora counts whole seconds: a fraction is rounded up, never down to no grace at all.
    let grace = settings.grace_period;
    let grace_seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    let mut conf = ServerConf {
        threads: settings.threads,
        work_stealing: settings.work_stealing,
        grace_period_seconds: Some(grace_seconds),
        graceful_shutdown_timeout_seconds: Some(grace_seconds + 5),
        ..ServerConf::default()
    };
    if let Some(sock) = &settings.upgrade_sock {
        conf.upgrade_sock = sock.display().to_string();
    }
    if let Some(pid) = &settings.pid_file {
        conf.pid_file = pid.display().to_string();
    }
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    server
}

/// The access log writer, flushed on shutdown; `None` when the config has none.
fn access_log(
    server: &mut Server,
    state: &SharedSnapshot,
) -> anyhow::Result<Option<Arc<AccessLog>>> {
    let Some(config) = state.load().access_log.clone() else {
        return Ok(None);
    };
    let path = config.path.clone();
    let log = AccessLog::start(config)
        .map_err(|e| anyhow::anyhow!("{}: cannot open access log: {e}", path.display()))?;
    server.add_service(background_service(
        "access log flush",
        FlushOnShutdown(log.clone()),
    ));
    Ok(Some(log))
}

/// The trace export (`[otel]`, read at start); `None` when the config has none.
fn tracer(state: &SharedSnapshot) -> anyhow::Result<Option<Arc<Tracer>>> {
    let Some(config) = state.load().otel.clone() else {
        return Ok(None);
    };
    let tracer = Tracer::start(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(endpoint = %config.endpoint, service = %config.service_name, sampling_ratio = config.sampling_ratio, "trace export on");
    Ok(Some(Arc::new(tracer)))
}

/// The admin audit log beside the access log, flushed on shutdown; `None` without an access log.
fn audit_log(server: &mut Server, state: &SharedSnapshot) -> anyhow::Result<Option<Audit>> {
    let Some(config) = state
        .load()
        .access_log
        .as_ref()
        .and_then(crate::observe::audit::audit_config)
    else {
        return Ok(None);
    };
    let path = config.path.clone();
    let log = AccessLog::start(config)
        .map_err(|e| anyhow::anyhow!("{}: cannot open the admin audit log: {e}", path.display()))?;
    server.add_service(background_service(
        "admin audit log flush",
        FlushOnShutdown(log.clone()),
    ));
    Ok(Some(Audit(log)))
}

/// One service per kind of listener, so a connection's kind is the service it arrived at:
/// behind a PROXY-protocol balancer or not, TLS or not. TLS listeners are TCP listeners to
/// pingora; the gate runs the handshake. Each service has `threads` worker threads.
fn add_proxy_services(
    server: &mut Server,
    state: &SharedSnapshot,
    access_log: &Option<Arc<AccessLog>>,
    tracer: &Option<Arc<Tracer>>,
) -> anyhow::Result<()> {
    let listeners = state.load().listeners().to_vec();
    let tls = if listeners.iter().any(|l| l.tls) {
        Some(Arc::new(TlsTerminator::new(state.clone())?))
    } else {
        None
    };
    for (proxy_protocol, with_tls) in [(false, true), (false, false), (true, true), (true, false)] {
        let group: Vec<_> = listeners
            .iter()
            .filter(|l| l.proxy_protocol == proxy_protocol && l.tls == with_tls)
            .collect();
        if group.is_empty() {
            continue;
        }
        let name = match (with_tls, proxy_protocol) {
            (true, false) => "menshen https",
            (false, false) => "menshen http",
            (true, true) => "menshen https (PROXY protocol)",
            (false, true) => "menshen http (PROXY protocol)",
        };
        let app = Proxy::new(state.clone(), access_log.clone()).with_tracer(tracer.clone());
        let terminator = if with_tls { tls.clone() } else { None };
        let mut service = Service::new(
            name.to_owned(),
            ConnGate::new(app, state.clone(), proxy_protocol, terminator),
        );
        for l in group {
            // No read buffer in front of the socket (pingora's default is 64 KiB per
            // connection): the HTTP/1 engine and rustls read into buffers of their own, which
            // an idle connection gives back.
            let buffers = L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE);
            service.add_listener(ListenerConfig::tcp(l.addr.to_string()).l4_buffer(buffers));
        }
        server.add_service(service);
    }
    Ok(())
}

/// Starts the admin listener on the control runtime (on an upgrade, once the old process lets
/// go of its port) and marks it ready once pingora runs this process's services (on an
/// upgrade: once the listening sockets came over) and every listener accepts.
fn start_admin(
    control: &tokio::runtime::Runtime,
    server: &Server,
    admin: &Arc<Admin>,
    addr: std::net::SocketAddr,
    upgrade: bool,
) -> anyhow::Result<()> {
    match control.block_on(tokio::net::TcpListener::bind(addr)) {
        Ok(listener) => {
            tracing::info!(%addr, "admin listening: /healthz /readyz /metrics /status, POST /reload");
            control.spawn(admin.clone().serve(listener));
        }
        // During a binary upgrade the old process holds the admin port until it exits.
        Err(e) if upgrade => {
            tracing::warn!(%addr, "admin port busy ({e}); taking it over when the old process exits");
            let admin = admin.clone();
            control.spawn(async move {
                let listener = loop {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
                        break listener;
                    }
                };
                tracing::info!(%addr, "admin listening");
                admin.serve(listener).await;
            });
        }
        Err(e) => anyhow::bail!("admin.addr {addr}: cannot listen: {e}"),
    }
    let ready = admin.clone();
    let mut phases = server.watch_execution_phase();
    control.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match phases.recv().await {
                Ok(ExecutionPhase::Running) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
        ready.wait_until_listening().await
    });
    Ok(())
}

/// A drain: on SIGTERM, or in the old process of a binary upgrade (SIGQUIT; its listeners go to
/// the new process, and it stops accepting a few seconds later), readiness turns 503 at once.
/// When pingora stops the listeners, every engine finishes what it serves: HTTP/1 responses
/// say `Connection: close` and idle keep-alive connections close after a quiet interval
/// (`h1::DRAIN_QUIET`), HTTP/2 clients get GOAWAY, tunnels run until either side closes. Once
/// no client connection is left the access log and queued spans are flushed and the process
/// exits; the grace period is only the upper bound (pingora ends the process then).
async fn drain(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    admin: Option<Arc<Admin>>,
    (log, audit): (Option<Arc<AccessLog>>, Option<Audit>),
    tracer: Option<Arc<Tracer>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    const SETTLED: Duration = Duration::from_millis(200);
    loop {
        match phases.recv().await {
            Ok(
                phase @ (ExecutionPhase::GracefulTerminate
                | ExecutionPhase::GracefulUpgradeTransferringFds),
            ) => {
                if let Some(audit) = &audit {
                    let (action, detail) = match phase {
                        ExecutionPhase::GracefulUpgradeTransferringFds => (
                            "upgrade",
                            "handing the listening sockets to the new binary; draining",
                        ),
                        _ => ("shutdown", "SIGTERM: draining"),
                    };
                    audit.record(action, "signal", "started", detail);
                }
                tracing::info!(
                    in_flight = in_flight::count(),
                    connections = in_flight::open_connections(),
                    "draining: readyz 503; listeners stop next (at once on SIGTERM, after the \
                     hand-over on an upgrade)"
                );
                if let Some(admin) = &admin {
                    admin.start_draining();
                }
            }
            Ok(ExecutionPhase::ShutdownStarted) => break,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
    if let Some(admin) = &admin {
        admin.start_draining();
    }
    // A connection accepted just before the listeners stopped may still be in its handshake:
    // the count must stay at zero for a moment.
    let mut empty_since: Option<std::time::Instant> = None;
    loop {
        if in_flight::open_connections() > 0 || in_flight::count() > 0 {
            empty_since = None;
        } else if empty_since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            >= SETTLED
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!("drained: no client connection left; exiting");
    if let Some(audit) = &audit {
        audit.record(
            "shutdown",
            "local",
            "ok",
            "drained: no client connection left; exiting",
        );
        let log = audit.0.clone();
        let _ = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(5))).await;
    }
    if let Some(log) = log {
        let _ = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(5))).await;
    }
    if let Some(tracer) = tracer {
        let _ = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
    }
    std::process::exit(0);
}

/// Flushes the access log when the server shuts down.
struct FlushOnShutdown(Arc<AccessLog>);

#[async_trait::async_trait]
impl BackgroundService for FlushOnShutdown {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        let log = self.0.clone();
        let _ =
            tokio::task::spawn_blocking(move || log.flush(std::time::Duration::from_secs(5))).await;
    }
}

/// What the operator sees first: listeners, sites, certificates and upstreams.
fn log_startup_summary(snapshot: &Snapshot) {
    tracing::info!("{}", summary(snapshot));
    for l in snapshot.listeners() {
        tracing::info!(listener = %l.name, addr = %l.addr, tls = l.tls, proxy_protocol = l.proxy_protocol, "listener");
    }
    for site in snapshot.router.sites() {
        tracing::info!(site = %site.name, hosts = ?site.hosts, routes = site.routes.len(), "site");
    }
    let now = crate::tls::cert::unix_now();
    for cert in snapshot.certs.certs() {
        let i = &cert.info;
        tracing::info!(
            certificate = %i.name,
            hosts = ?i.hosts,
            approved_root = %i.root,
            not_after = %crate::tls::cert::format_time(i.not_after),
            days_left = i.days_left(now),
            "certificate"
        );
    }
    for up in snapshot.upstreams.values() {
        let backends: Vec<String> = up
            .backend_health()
            .iter()
            .map(|(a, _)| a.to_string())
            .collect();
        tracing::info!(upstream = %up.name, backends = ?backends, tls = up.is_tls(), "upstream");
    }
}
