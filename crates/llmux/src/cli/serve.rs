//! `llmux serve`: start the gateway (and, with `--demo`, a simulated provider for every
//! catalog model).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::billing::byok::Sealer;
use crate::billing::{Billing, keys};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::demo::{self, DemoProviders};
use crate::metering::spool::Spool;
use crate::metering::{Meter, estimate};
use crate::pipeline::Gateway;
use crate::providers::Upstream;
use crate::storage::{Store, redact};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (`host:port`), overriding the configuration.
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve every catalog model through a built-in simulated provider (no keys needed).
    #[arg(long)]
    pub demo: bool,
    /// In demo mode, requests per second of background demo traffic (many models, apps and
    /// keys) through this gateway, so rankings and activity fill with data; 0 turns it off.
    #[arg(long, default_value_t = 2.0)]
    pub demo_rps: f64,
}

/// After a graceful shutdown's grace period (`server.shutdown_grace_ms`), how long the streams
/// ended then may take to send their last event.
const STREAMS_END_WITHIN: Duration = Duration::from_secs(2);
/// How long a shutdown waits for settlements that Redis has not taken yet.
const SETTLEMENTS_WITHIN: Duration = Duration::from_secs(5);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Write the records of spool segments left by an earlier run (idempotent by record id), then
/// delete the segments.
async fn replay_spool(
    store: &Store,
    segments: &[std::path::PathBuf],
    node: &str,
    privacy: &crate::metering::rollup::Privacy,
) -> anyhow::Result<()> {
    let mut total = 0;
    for path in segments {
        let records = crate::metering::spool::read_segment(path)?;
        for chunk in records.chunks(1000) {
            store.write_generations(chunk, node, privacy).await?;
        }
        total += records.len();
        std::fs::remove_file(path)?;
    }
    if total > 0 {
        tracing::info!("wrote {total} generation records kept in the spool by an earlier run");
    }
    Ok(())
}

/// Bind with a deep accept queue: a burst of new connections (thousands of clients opening
/// streams at once) waits in the kernel instead of being refused. The kernel caps it at
/// `net.core.somaxconn`.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)?.into_std()
}

pub async fn serve(config: Config, demo: bool, demo_rps: f64) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    let demo_providers = if demo {
        Some(DemoProviders::start().await?)
    } else {
        None
    };
    let catalog = Arc::new(Catalog::build(&config, demo_providers.as_ref())?);
    let node = keys::random_id("node-");
    let sealer = Sealer::from_env(&config.billing.secrets_key_env)?;
    if sealer.is_none() {
        tracing::info!(
            "{} is not set: accounts cannot store their own provider keys (BYOK)",
            config.billing.secrets_key_env
        );
    }
    // Records an earlier run answered for but did not write are written first, so balances
    // below include their charges.
    let spool = match config.metering.spool {
        true => {
            let (spool, leftovers) = Spool::open(&config.data_dir.join("spool"))?;
            replay_spool(&store, &leftovers, &node, &config.privacy()).await?;
            Some(Arc::new(spool))
        }
        false => None,
    };
    let billing = Billing::new(store.clone(), node.clone(), sealer).await?;
    // Partitions ahead of time and retention, hourly (on PostgreSQL also at every open).
    {
        let (store, retention) = (store.clone(), config.metering.retention_days);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                if let Err(e) = store.maintain_generations(retention).await {
                    tracing::warn!("maintaining generation records: {e:#}");
                }
            }
        });
    }
    billing.spawn_sync();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (meter, writer) = Meter::start(
        store.clone(),
        &config.metering,
        node.clone(),
        metrics,
        Arc::new(config.privacy()),
        spool,
    );
    let router = crate::router::Router::new(&config.router);
    estimate::warm_up();
    let upstream = Upstream::new(&catalog, config.threads)?;
    let demo_key = match demo {
        true => Some(demo::ensure_demo_key(&store, &config.data_dir, &node).await?),
        false => None,
    };
    let rankings_cache_ttl = config.rankings_cache;
    let cluster = match &config.file.cluster.redis {
        Some(url) => {
            anyhow::ensure!(
                config.database_url.starts_with("postgres"),
                "[cluster] redis needs a shared database: database = \"postgres://...\""
            );
            let prefix = config.file.cluster.prefix.as_deref().unwrap_or("llmux");
            Some(Arc::new(
                crate::cluster::Cluster::connect(url, prefix, &node).await?,
            ))
        }
        None => None,
    };
    let listener = listen(config.listen)?;
    let addr = listener.local_addr()?;
    let routable = catalog.routable_models().count();
    let config_threads = config.threads;
    let gw = Arc::new(Gateway {
        config,
        catalog,
        billing,
        meter,
        upstream,
        router,
        store: store.clone(),
        cluster: cluster.clone(),
        rankings_cache: crate::rankings::cache::Cache::new(rankings_cache_ttl),
        requests: tokio_util::task::TaskTracker::new(),
        shutdown: crate::pipeline::Shutdown::new(config_threads),
    });
    if let Some(c) = &cluster {
        gw.billing.set_cluster(c.clone());
        c.clone().spawn_health(gw.clone());
        c.clone().spawn_upkeep();
    }

    println!("llmux listening on http://{addr}");
    println!("  database: {}", redact(&gw.config.database_url));
    if let Some(url) = &gw.config.file.cluster.redis {
        println!(
            "  cluster: rate limits, reservations and endpoint health shared through {}",
            redact(url)
        );
    }
    println!("  models with endpoints: {routable}");
    if let Some(k) = &demo_key {
        println!(
            "  demo: every model is served by a simulated provider (no real provider is called)"
        );
        println!("  demo key: {k}");
        println!(
            "  try: curl http://{addr}/api/v1/chat/completions -H 'Authorization: Bearer {k}' \\\n         -H 'Content-Type: application/json' -d '{{\"model\":\"deepseek/deepseek-v3.2\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"
        );
    }

    let traffic = match (&demo_key, demo_rps > 0.0) {
        (Some(_), true) => {
            let keys = demo::ensure_traffic_keys(&store, &gw.config.data_dir, &node).await?;
            let host = if addr.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            };
            println!(
                "  demo traffic: {demo_rps} requests/s from 3 demo teams (--demo-rps 0 turns it off)"
            );
            let workload = demo::traffic::Workload {
                url: format!("http://{host}"),
                keys,
                rps: demo_rps,
                duration: None,
                seed: None,
            };
            Some(tokio::spawn(async move {
                if let Err(e) = demo::traffic::run(workload).await {
                    tracing::warn!("demo traffic stopped: {e:#}");
                }
            }))
        }
        _ => None,
    };

    let app = crate::server::router(gw.clone());
    let mut workers = crate::server::workers::start(
        listener,
        app,
        gw.config.threads,
        gw.config.poll_before_sleep,
    )?;
    shutdown_signal().await;
    if let Some(t) = &traffic {
        t.abort();
    }
    tracing::info!("shutting down: finishing open requests");
    workers.shutdown();
    // Connections close first; requests whose client left may still be recording.
    gw.requests.close();
    {
        let finished = async {
            workers.served().await;
            gw.requests.wait().await;
        };
        tokio::pin!(finished);
        let grace = gw.config.shutdown_grace;
        if tokio::time::timeout(grace, &mut finished).await.is_err() {
            tracing::warn!("open requests did not finish within {grace:?}; ending their streams");
            // Streams end at once, each recorded and billed for what it produced; whole answers
            // still awaited get a 503 and are recorded with it.
            gw.shutdown.cancel();
            if tokio::time::timeout(STREAMS_END_WITHIN, finished)
                .await
                .is_err()
            {
                tracing::warn!("open requests did not end within {STREAMS_END_WITHIN:?}");
            }
        }
    }
    // The serving threads stop: what they still run is dropped (a whole answer whose 503
    // could not be written in time is recorded as cancelled by its drop guard; its hold is
    // given back).
    let cluster = gw.cluster.clone();
    tokio::task::spawn_blocking(move || workers.stop()).await?;
    // Every record of an answered request is written before the process ends.
    gw.meter.flush().await;
    gw.meter.finish_spool();
    gw.meter.stop();
    drop(gw);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    if let Some(cluster) = cluster {
        // Settlements still being sent (Redis slow or away): a hold left unsettled would be
        // given back whole once this node is gone, and its charge lost from the cluster's
        // credits.
        cluster.settling.close();
        if tokio::time::timeout(SETTLEMENTS_WITHIN, cluster.settling.wait())
            .await
            .is_err()
        {
            tracing::error!(
                "settlements still not taken by Redis after {SETTLEMENTS_WITHIN:?}: their \
                 holds will be given back whole"
            );
        }
    }
    store.close().await;
    if let Some(d) = demo_providers {
        d.sim.abort();
    }
    Ok(())
}
