//! Configuration: the file's shape ([`file`]), read strictly, then checked into the runtime
//! settings the rest of llmux uses. Providers, models and endpoints from the file are merged
//! into the catalog by [`crate::catalog`].

pub mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

pub use file::{ConfigFile, EndpointSection, ModelSection, PricingSection, ProviderSection};

/// Runtime settings, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file came from (None: defaults only).
    pub path: Option<PathBuf>,
    pub listen: SocketAddr,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    /// While a stream waits for its first token, send an SSE comment this often.
    pub stream_keepalive: Duration,
    /// A streamed answer's client that takes none of it for this long is treated as gone.
    pub stream_send_timeout: Duration,
    /// On SIGTERM, how long open requests may take to finish before streams are ended.
    pub shutdown_grace: Duration,
    /// Serving threads ([`crate::server::workers`]).
    pub threads: usize,
    /// How long an idle serving thread watches for events before sleeping.
    pub poll_before_sleep: Duration,
    pub metering: MeteringSettings,
    pub billing: BillingSettings,
    pub router: RouterSettings,
    /// How long public rankings answers are reused.
    pub rankings_cache: Duration,
    pub file: ConfigFile,
}

impl Config {
    /// Which accounts stay out of public rankings.
    pub fn privacy(&self) -> crate::metering::rollup::Privacy {
        crate::metering::rollup::Privacy {
            private_accounts: self
                .file
                .rankings
                .private_accounts
                .iter()
                .cloned()
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub unstable_window: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub sticky_idle: Duration,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct BillingSettings {
    pub byok_fee: crate::billing::byok::Fee,
    pub secrets_key_env: String,
}

#[derive(Debug, Clone)]
pub struct MeteringSettings {
    /// Records are written at least this often (the most a hard crash can lose).
    pub flush_interval: Duration,
    pub batch_size: usize,
    /// Above this many records waiting for the database, new requests are refused (503)
    /// rather than records dropped.
    pub max_pending: usize,
    /// Keep a crash-safe local copy of records until they are written.
    pub spool: bool,
    /// Days raw records are kept (None: forever).
    pub retention_days: Option<u32>,
    /// The writer in the idle scheduling class while it keeps up (`metering::priority`).
    pub writer_idle_class: bool,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// The data directory used when neither the config nor `--database` names a database:
/// `$LLMUX_DATA_DIR`, else `$XDG_DATA_HOME/llmux`, else `~/.local/share/llmux`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LLMUX_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("llmux");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/llmux"),
        None => PathBuf::from("llmux-data"),
    }
}

impl Config {
    /// Load `path` (or defaults), then apply command-line overrides.
    pub fn load(
        path: Option<&Path>,
        listen: Option<&str>,
        database: Option<&str>,
    ) -> anyhow::Result<Config> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("in config {}", p.display()))?
            }
            None => ConfigFile::default(),
        };
        Self::from_file(file, path, listen, database)
    }

    pub fn from_file(
        file: ConfigFile,
        path: Option<&Path>,
        listen: Option<&str>,
        database: Option<&str>,
    ) -> anyhow::Result<Config> {
        let s = &file.server;
        let listen_str = listen.or(s.listen.as_deref()).unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_str
            .parse()
            .with_context(|| format!("listen address {listen_str:?} (expected host:port)"))?;
        let data_dir = match &s.data_dir {
            Some(d) => resolve_relative(path, d),
            None => default_data_dir(),
        };
        let database_url = match database.or(s.database.as_deref()) {
            Some(u) => normalize_database_url(u, path)?,
            None => format!("sqlite://{}", data_dir.join("llmux.db").display()),
        };
        let m = &file.metering;
        let metering = MeteringSettings {
            flush_interval: Duration::from_millis(m.flush_interval_ms.unwrap_or(200)),
            batch_size: m.batch_size.unwrap_or(1000).max(1),
            max_pending: m.max_pending.unwrap_or(200_000).max(1),
            spool: m.spool.unwrap_or(true),
            retention_days: m.retention_days,
            writer_idle_class: m.writer_idle_class.unwrap_or(true),
        };
        if metering.flush_interval.is_zero() {
            bail!("metering.flush_interval_ms must be positive");
        }
        let b = &file.billing;
        let billing = BillingSettings {
            byok_fee: crate::billing::byok::Fee::percent(
                b.byok_fee_percent.as_deref().unwrap_or("5"),
            )
            .context("billing.byok_fee_percent")?,
            secrets_key_env: b
                .secrets_key_env
                .clone()
                .unwrap_or_else(|| "LLMUX_SECRETS_KEY".into()),
        };
        Ok(Config {
            path: path.map(Path::to_path_buf),
            listen,
            database_url,
            data_dir,
            max_body_bytes: s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            stream_keepalive: Duration::from_millis(s.stream_keepalive_ms.unwrap_or(3000).max(100)),
            stream_send_timeout: Duration::from_millis(
                s.stream_send_timeout_ms.unwrap_or(60_000).max(100),
            ),
            shutdown_grace: Duration::from_millis(s.shutdown_grace_ms.unwrap_or(10_000)),
            threads: match s.threads {
                Some(n @ 1..=1024) => n,
                Some(n) => bail!("server.threads must be between 1 and 1024, not {n}"),
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            poll_before_sleep: match s.poll_before_sleep_us.unwrap_or(200) {
                us @ 0..=1000 => Duration::from_micros(us),
                us => bail!("server.poll_before_sleep_us must be at most 1000, not {us}"),
            },
            metering,
            billing,
            router: RouterSettings {
                unstable_window: Duration::from_secs(
                    file.router.unstable_window_secs.unwrap_or(30).max(1),
                ),
                breaker_failures: file.router.breaker_failures.unwrap_or(5).max(1),
                breaker_open: Duration::from_secs(
                    file.router.breaker_open_secs.unwrap_or(10).max(1),
                ),
                sticky_idle: Duration::from_secs(
                    60 * file.router.sticky_idle_minutes.unwrap_or(10),
                ),
                seed: file.router.seed,
            },
            rankings_cache: Duration::from_secs(file.rankings.cache_secs.unwrap_or(15)),
            file,
        })
    }
}

fn resolve_relative(config_path: Option<&Path>, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match config_path.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// `sqlite://relative.db` in a config file is relative to the file's directory, so the CLI and
/// the server find the same database wherever they are started from.
fn normalize_database_url(url: &str, config_path: Option<&Path>) -> anyhow::Result<String> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (file, query) = rest
            .split_once('?')
            .map_or((rest, None), |(f, q)| (f, Some(q)));
        if file.is_empty() || file == ":memory:" {
            return Ok(url.to_string());
        }
        let p = resolve_relative(config_path, Path::new(file));
        return Ok(match query {
            Some(q) => format!("sqlite://{}?{q}", p.display()),
            None => format!("sqlite://{}", p.display()),
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_string());
    }
    bail!("database {url:?}: expected sqlite://FILE or postgres://...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_contract() {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
database = "sqlite://llmux.db"

[[providers]]
slug = "deepseek"
name = "DeepSeek"
api = "openai"
base_url = "https://api.deepseek.com/v1"
api_key_env = "DEEPSEEK_API_KEY"

[[models]]
id = "acme/tiny-1"
name = "Acme Tiny 1"
context_length = 32768

[[endpoints]]
model = "deepseek/deepseek-v3.2"
provider = "deepseek"
upstream_model = "deepseek-chat"
pricing = { prompt = "0.28", completion = "0.42", input_cache_read = "0.028" }
context_length = 131072
"#;
        let file: ConfigFile = toml::from_str(text).unwrap();
        let c =
            Config::from_file(file, Some(Path::new("/etc/llmux/llmux.toml")), None, None).unwrap();
        assert_eq!(c.database_url, "sqlite:///etc/llmux/llmux.db");
        assert_eq!(c.file.providers[0].slug, "deepseek");
        assert_eq!(
            c.file.endpoints[0].pricing.input_cache_read.as_deref(),
            Some("0.028")
        );
    }

    #[test]
    fn serving_threads_default_to_the_cores_and_zero_is_refused() {
        let parse = |text: &str| Config::from_file(toml::from_str(text).unwrap(), None, None, None);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(parse("").unwrap().threads, cores);
        assert_eq!(parse("[server]\nthreads = 3\n").unwrap().threads, 3);
        let err = parse("[server]\nthreads = 0\n").unwrap_err();
        assert!(err.to_string().contains("server.threads"), "{err}");
    }

    #[test]
    fn the_watch_before_sleeping_defaults_to_200_us_and_is_bounded() {
        let parse = |text: &str| Config::from_file(toml::from_str(text).unwrap(), None, None, None);
        let watch = |text: &str| parse(text).unwrap().poll_before_sleep;
        assert_eq!(watch(""), Duration::from_micros(200));
        assert_eq!(
            watch("[server]\npoll_before_sleep_us = 0\n"),
            Duration::ZERO
        );
        let err = parse("[server]\npoll_before_sleep_us = 5000\n").unwrap_err();
        assert!(err.to_string().contains("poll_before_sleep_us"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<ConfigFile>("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }
}
