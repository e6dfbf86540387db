//! Wiring: turns a validated [`Config`] into a running gateway. Every file the configuration
//! names is read at start (`start`), and a failure names the file and stops the start before
//! anything is written; [`serve`] then runs the gateway on listeners it is handed.

mod start;

use start::{Inputs, authenticator, bootstrap_template, serving_certificate};
pub use start::{authorization, authorization_alone, check, detected_addresses};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::authn::token_file::TokenFileError;
use crate::authn::x509::{ClientCa, ClientCaError};
use crate::authz::AnyAuthorizer;
use crate::authz::rbac::RbacError;
use crate::certs::CertError;
use crate::certs::client::ClientFlow;
use crate::certs::manager::{Manager, Timing};
use crate::certs::serving::{self, Addresses, ServingFlow};
use crate::certs::store::Issued;
use crate::clock::Clock;
use crate::config::{AuthorizationMode, Config, ServingCertSource};
use crate::k8s::identity::IdentityFiles;
use crate::k8s::{ApiClient, Backoff, ClientError};
use crate::logs::{self, LogServer};
use crate::ops::audit::{AuditLog, Output};
use crate::ops::observer::Observer;
use crate::proxy::forward::UpstreamUrlError;
use crate::proxy::pipeline::{Pipeline, Policy};
use crate::proxy::tunnel::Streams;
use crate::reload::{RECHECK_INTERVAL, ReloadStats, Reloader};
use crate::tls::reload::{ClientCaFile, PairFiles, RebuildTls};
use crate::tls::{self, ServingCert, TlsError, TlsState};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A combination of settings that cannot work.
    #[error("{field}: {message}")]
    Unsupported { field: &'static str, message: &'static str },
    #[error("serving certificate: {0}")]
    Cert(#[from] CertError),
    #[error("authentication.x509.clientCAFile: {0}")]
    ClientCa(#[from] ClientCaError),
    #[error("authentication.tokenFile: {0}")]
    TokenFile(#[from] TokenFileError),
    #[error("authorization.rbac.policyFiles: {0}")]
    Rbac(#[from] RbacError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("upstream.readOnly: {0}")]
    Upstream(#[from] UpstreamUrlError),
    #[error(transparent)]
    SecurePort(#[from] crate::proxy::secure::SecurePortError),
    #[error("kubeconfig: {0}")]
    ApiClient(#[from] ClientError),
    #[error(transparent)]
    Join(#[from] crate::certs::client::JoinError),
    #[error(transparent)]
    Audit(#[from] crate::ops::audit::AuditError),
    #[error(transparent)]
    Random(#[from] crate::authn::secret::RandomError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// Problems with what the configuration asks for (exit 2), as opposed to run-time failures.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, StartError::Bind { .. } | StartError::Random(_))
    }
}

/// A gateway, built but not yet listening: its request pipeline, TLS, background tasks and ops
/// state. [`serve`] runs it.
pub struct Gateway {
    pub pipeline: Arc<Pipeline>,
    /// The listener's TLS configuration and serving certificate.
    pub tls: TlsState,
    pub serving: Arc<ServingCert>,
    pub reload_stats: Arc<ReloadStats>,
    /// Watches the certificate files; `serve` starts it.
    pub reloader: Option<Reloader>,
    /// Obtains and rotates the serving certificate through the CSR API.
    pub bootstrap: Option<(Manager<ServingFlow>, Option<Issued>)>,
    /// Renews a self-signed serving certificate before it expires.
    pub self_signed: Option<crate::certs::self_signed::Renewal>,
    /// Joins with the bootstrap token and renews the gateway's client certificate.
    pub join: Option<(Manager<ClientFlow>, Option<Issued>)>,
    /// Things an operator should know (weak settings, odd policy files), for the start-up log.
    pub warnings: Vec<String>,
    /// The API server client, when a webhook or the CSR flow needs one.
    pub api: Option<Arc<ApiClient>>,
    /// Drains the audit queue into its file; `serve` starts it.
    pub audit_writer: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// What the ops listener serves: `/healthz`, `/readyz`, `/metrics`.
    pub ops: Arc<crate::ops::Ops>,
    /// The 10250 listener's deadlines and caps.
    pub limits: crate::config::Limits,
    /// Its connections, counted for `/metrics`.
    pub connections: Arc<crate::ops::metrics::ConnectionStats>,
}

impl Gateway {
    /// Starts the background work (certificate reloading, the CSR flow, the self-signed
    /// renewal, the audit writer) on the current runtime.
    fn spawn_background(&mut self) {
        if let Some(reloader) = self.reloader.take() {
            tokio::spawn(reloader.run());
        }
        if let Some((join, current)) = self.join.take() {
            tokio::spawn(join.run(current));
        }
        if let Some((bootstrap, current)) = self.bootstrap.take() {
            tokio::spawn(bootstrap.run(current));
        }
        if let Some(renewal) = self.self_signed.take() {
            tokio::spawn(renewal.run());
        }
        if let Some(writer) = self.audit_writer.take() {
            tokio::spawn(writer);
        }
    }
}

/// What tests (and nothing else) vary: the clock the caches read, the API server backoff,
/// how often a followed container log is polled, and the self-signed certificate's lifetime.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub clock: Clock,
    pub backoff: Backoff,
    /// How often certificate files are re-read without a file event.
    pub reload_interval: Duration,
    /// The CSR flows' first retry delay (serving and client certificate), and how often the
    /// serving flow re-reads the node's addresses.
    pub bootstrap_retry: Duration,
    pub bootstrap_recheck: Duration,
    /// How long one CSR may wait for approval and issuance.
    pub bootstrap_wait: Duration,
    pub follow_poll: Duration,
    /// How long a generated self-signed pair is valid (it is renewed at 70–90% of that).
    pub self_signed_lifetime: Duration,
}

impl BuildOptions {
    /// The certificate manager's timing for both CSR flows.
    pub(crate) fn csr_timing(&self) -> Timing {
        Timing {
            wait: self.bootstrap_wait,
            retry: self.bootstrap_retry,
            recheck: self.bootstrap_recheck,
        }
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            clock: Clock::system(),
            backoff: Backoff::KUBELET,
            reload_interval: RECHECK_INTERVAL,
            bootstrap_retry: Duration::from_secs(2),
            bootstrap_recheck: Duration::from_secs(60),
            bootstrap_wait: Duration::from_secs(15 * 60),
            follow_poll: logs::FOLLOW_POLL,
            self_signed_lifetime: crate::certs::self_signed::LIFETIME,
        }
    }
}

pub async fn build(config: &Config) -> Result<Gateway, StartError> {
    build_with(config, BuildOptions::default()).await
}

pub async fn build_with(config: &Config, options: BuildOptions) -> Result<Gateway, StartError> {
    // Read and check everything first; only then write (the self-signed pair, the audit file).
    let inputs = Inputs::read(config, &options).await?;
    let api = inputs.api;
    let join = inputs.join;
    let start::Serving {
        cert: serving,
        bootstrapped,
        renewal,
    } = serving_certificate(config, inputs.serving, options.self_signed_lifetime)?;
    // Every lost audit record counts here: the writer's failures and a full queue alike.
    let audit_dropped = prometheus_client::metrics::counter::Counter::default();
    let (audit, audit_writer) = match &config.audit {
        Some(sink) => {
            let (log, writer) = AuditLog::new(Output::open(sink)?, audit_dropped.clone());
            (
                Some(log),
                Some(Box::pin(writer) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
            )
        }
        None => (None, None),
    };

    let client_ca = inputs.client_ca.map(|ca| Arc::new(ArcSwap::from_pointee(ca)));
    let token_file = inputs.token_file.map(|f| Arc::new(ArcSwap::from_pointee(f)));
    let authenticator = authenticator(config, client_ca.clone(), token_file.clone(), api.as_ref(), &options)?;
    let authorizer = inputs.authorizer;

    let rebuild: RebuildTls = {
        let (serving, min_version, suites) = (
            serving.clone(),
            config.tls_min_version,
            config.tls_cipher_suites.clone(),
        );
        Box::new(move |ca: Option<&ClientCa>| tls::server_config(serving.clone(), ca, min_version, &suites))
    };
    let tls = Arc::new(ArcSwap::from_pointee(rebuild(
        client_ca.as_ref().map(|ca| ca.load_full()).as_deref(),
    )?));
    let secure = inputs.secure.map(Arc::new);
    let reload_stats = Arc::new(ReloadStats::default());
    let mut reloader = Reloader::new(options.reload_interval, reload_stats.clone());
    if let ServingCertSource::Files { cert, key } = &config.serving_cert {
        reloader.add(PairFiles {
            what: "serving certificate",
            cert: cert.clone(),
            key: key.clone(),
            slot: serving.clone(),
        });
    }
    if let (Some(path), Some(current)) = (&config.authentication.client_ca_file, &client_ca) {
        reloader.add(ClientCaFile {
            path: path.clone(),
            current: current.clone(),
            tls: tls.clone(),
            rebuild,
        });
    }
    if let (Some(secure), Some(port)) = (&config.upstream.secure, &secure) {
        reloader.add(PairFiles {
            what: "client certificate for the kubelet's port",
            cert: secure.cert_file.clone(),
            key: secure.key_file.clone(),
            slot: port.clone(),
        });
    }
    // The policy files: tokens and RBAC rules, reloaded as the certificates are but counted on
    // their own.
    let policy_reloads = Arc::new(ReloadStats::default());
    if let (Some(path), Some(current)) = (&config.authentication.token_file, &token_file) {
        reloader.add(crate::authn::token_file::TokenFileSource {
            path: path.clone(),
            current: current.clone(),
            stats: policy_reloads.clone(),
        });
    }
    if let AnyAuthorizer::Rbac(rbac) = &authorizer
        && !config.authorization.rbac_policy_files.is_empty()
    {
        reloader.add(crate::authz::rbac::reload::PolicyFiles {
            paths: config.authorization.rbac_policy_files.clone(),
            current: rbac.current().clone(),
            stats: policy_reloads.clone(),
        });
    }
    if let Some(api) = &api {
        // The kubeconfig's certificate, key and token files (the kubelet's renewed
        // kubelet-client-current.pem, a projected token): the API client follows them.
        reloader.add(IdentityFiles { api: api.clone() });
    }
    let reloader = (!reloader.is_empty()).then_some(reloader);
    let streams = Arc::new(Streams::default());
    let audit_health = audit.as_ref().map(|log| log.health().clone());
    let mut observer = Observer::new(audit);
    observer.metrics.audit_dropped = audit_dropped;
    let authenticator = match observer.audits() {
        true => authenticator.with_audit_key(crate::authn::secret::hmac_key()?),
        false => authenticator,
    };
    let pipeline = Pipeline {
        policy: Policy {
            node_name: config.node_name.clone(),
            fine_grained_authz: config.fine_grained_authz,
            exec_requires_create: config.authorization.exec_requires_create,
            read_only_port: inputs.read_only.is_some(),
            secure_port: secure.is_some(),
        },
        authenticator,
        authorizer,
        read_only: inputs.read_only,
        secure: secure.clone(),
        streams: streams.clone(),
        logs: LogServer::new(&config.logs, config.split_log_streams, options.follow_poll),
        stats: Default::default(),
        observer: Arc::new(observer),
        quotas: crate::proxy::quota::Quotas::new(
            config.limits.max_streams_per_user,
            config.limits.max_log_streams_per_connection,
        ),
        body_limit: config.limits.max_request_body_bytes,
    };
    let bootstrap = match (bootstrapped, &api) {
        (Some(current), Some(api)) => Some((
            Manager {
                flow: ServingFlow {
                    api: api.clone(),
                    node_name: config.node_name.clone(),
                    addresses: match bootstrap_template(config) {
                        Some(_) => Addresses::Configured(config.node_addresses.clone()),
                        None => Addresses::FromNode,
                    },
                    serving: serving.clone(),
                },
                store: serving::store(&config.cert_dir),
                timing: options.csr_timing(),
            },
            current,
        )),
        _ => None,
    };
    let tls = TlsState {
        config: tls,
        serving: serving.clone(),
    };
    let api_in_request_path =
        config.authentication.webhook.enabled || config.authorization.mode == AuthorizationMode::Webhook;
    let connections = Arc::new(crate::ops::metrics::ConnectionStats::default());
    let registry = crate::ops::metrics::registry(crate::ops::metrics::Sources {
        requests: pipeline.observer.metrics.clone(),
        token_cache: pipeline.authenticator.token_reviewer().map(|t| t.stats().clone()),
        review_budget: pipeline.authenticator.token_reviewer().map(|t| t.budget().clone()),
        sar_cache: match &pipeline.authorizer {
            AnyAuthorizer::Webhook(sar) => Some(sar.stats().clone()),
            _ => None,
        },
        serving: serving.clone(),
        reload: reload_stats.clone(),
        policy_reload: policy_reloads.clone(),
        api: api.clone(),
        streams,
        connections: connections.clone(),
        quotas: pipeline.quotas.stats.clone(),
    });
    let mut readiness = crate::ops::Readiness::new(
        serving.clone(),
        config.upstream.read_only.as_ref(),
        secure,
        api.clone().filter(|_| api_in_request_path),
    );
    readiness.audit = audit_health;
    Ok(Gateway {
        ops: Arc::new(crate::ops::Ops { registry, readiness }),
        pipeline: Arc::new(pipeline),
        tls,
        serving,
        reload_stats,
        reloader,
        bootstrap,
        self_signed: renewal,
        join,
        warnings: inputs.warnings,
        api,
        audit_writer,
        limits: config.limits.clone(),
        connections,
    })
}

/// Binds the configured listeners, states the security posture, and serves until `shutdown`
/// resolves.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let gateway = build(config).await?;
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let listener = bind(config.listen).await?;
    let ops_listener = bind(config.ops_address).await?;
    log_posture(config, &gateway.warnings);
    if let Some(audit) = gateway.ops.readiness.audit.clone() {
        tokio::spawn(reopen_audit_on_hangup(audit));
    }
    serve(gateway, listener, ops_listener, shutdown).await;
    Ok(())
}

/// SIGHUP reopens the audit file at its path, as logrotate's `postrotate` expects (the writer
/// also notices a file renamed or deleted under it on its own); without a handler, SIGHUP would
/// end the process.
async fn reopen_audit_on_hangup(audit: Arc<crate::ops::audit::Health>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the audit log is still followed at its path");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reopening the audit log");
        audit.reopen();
    }
}

/// Everything but binding: starts the background tasks and the ops listener, serves the 10250
/// listener until `shutdown` resolves (then lets open connections finish for the grace period),
/// and stops the ops listener last.
pub async fn serve(
    mut gateway: Gateway,
    listener: TcpListener,
    ops_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    gateway.spawn_background();
    let (ops_stop, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::ops::serve(ops_listener, gateway.ops.clone(), async move {
        let _ = ops_stopped.await;
    }));
    crate::server::serve(
        listener,
        gateway.tls,
        gateway.pipeline,
        gateway.limits,
        gateway.connections,
        shutdown,
    )
    .await;
    let _ = ops_stop.send(());
}

fn log_posture(config: &Config, warnings: &[String]) {
    let source = match &config.serving_cert {
        ServingCertSource::Files { .. } => "files",
        ServingCertSource::SelfSigned => "self-signed",
        ServingCertSource::Bootstrap { .. } => "csr-bootstrap",
    };
    tracing::info!(
        listen = %config.listen,
        node = %config.node_name,
        certificate = source,
        api_identity = match (&config.bootstrap_kubeconfig, &config.kubeconfig) {
            (Some(_), _) => "kubeconfig, joined and renewed with bootstrapKubeconfig",
            (None, Some(_)) => "kubeconfig",
            (None, None) => "in-cluster",
        },
        client_ca = config.authentication.client_ca_file.is_some(),
        token_file = config.authentication.token_file.is_some(),
        anonymous = config.authentication.anonymous,
        authorization = ?config.authorization.mode,
        fine_grained_authz = config.fine_grained_authz,
        exec_requires_create = config.authorization.exec_requires_create,
        read_only_port = config.upstream.read_only.as_ref().map(ToString::to_string).unwrap_or_default(),
        secure_port = config.upstream.secure.as_ref().map(|s| s.url.to_string()).unwrap_or_default(),
        node_log_dir = %config.logs.node_log_dir.display(),
        pod_log_dir = %config.logs.pod_log_dir.display(),
        split_log_streams = config.split_log_streams,
        ops = %config.ops_address,
        audit = config.audit.is_some(),
        "kubelet-gate listening"
    );
    // Weak settings are stated loudly, one line each, so they stand out in any log.
    for w in warnings {
        tracing::warn!("SECURITY WARNING: {w}");
    }
    if config.audit.is_none() {
        tracing::warn!("no audit log: set audit.path to record who called the node API");
    }
}
