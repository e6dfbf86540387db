//! Who the gateway is to the API server, and how that is rebuilt without a restart. The `kube`
//! client reads its certificate, key and CA once, when it is built, so a kubeconfig that names
//! the kubelet's `kubelet-client-current.pem` (a link the kubelet swaps when it renews) would
//! present the old certificate until it expires, and then every review would fail. The client is
//! therefore kept in a slot and built again when the files behind it change
//! ([`IdentityFiles`], a [`reload::Source`](crate::reload::Source)) or when the gateway's own
//! join stores a new certificate; a call takes the client in the slot when it starts, so calls
//! in flight finish on the one they began with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt as _;

use super::kubeconfig::Loaded;
use super::{ApiClient, CallError, ClientError};
use crate::certs::manager::rfc3339;
use crate::certs::rotation::is_past;

/// Where the identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    Kubeconfig(PathBuf),
    /// The pod's service account (kube-client config/incluster_config.rs).
    InCluster,
}

/// The service account token and CA a pod reads (kube-client incluster_config.rs
/// `SERVICE_TOKENFILE`, `SERVICE_CERTFILE`): projected files the kubelet refreshes.
const IN_CLUSTER_FILES: [&str; 2] = [
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
];

/// A built client and when its certificate ends (`None`: no certificate, or it has no end).
struct Ready {
    client: kube::Client,
    not_after: Option<i64>,
}

enum State {
    Ready(Ready),
    /// No identity yet (a join in progress) or none any more, and why.
    Pending(String),
}

/// The identity in use, swapped whole.
pub(super) struct Slot {
    state: ArcSwap<State>,
    source: Option<IdentitySource>,
}

impl Slot {
    pub(super) fn ready(source: IdentitySource) -> Result<Slot, ClientError> {
        let ready = build(&source)?;
        Ok(Slot {
            state: ArcSwap::from_pointee(State::Ready(ready)),
            source: Some(source),
        })
    }

    pub(super) fn pending(source: Option<IdentitySource>, why: String) -> Slot {
        Slot {
            state: ArcSwap::from_pointee(State::Pending(why)),
            source,
        }
    }

    /// The client for a call starting now. A certificate past its end is not presented:
    /// the API server would refuse it anyway, and the reason is clearer here.
    pub(super) fn client(&self) -> Result<kube::Client, CallError> {
        match &**self.state.load() {
            State::Ready(r) => match r.not_after {
                Some(end) if is_past(end) => Err(CallError::NoIdentity(format!(
                    "the client certificate expired at {}",
                    rfc3339(end)
                ))),
                _ => Ok(r.client.clone()),
            },
            State::Pending(why) => Err(CallError::NoIdentity(why.clone())),
        }
    }

    pub(super) fn rebuild(&self) -> Result<(), ClientError> {
        let source = self
            .source
            .as_ref()
            .ok_or_else(|| ClientError::Client("no kubeconfig to build the client from".into()))?;
        let ready = build(source)?;
        self.state.store(Arc::new(State::Ready(ready)));
        Ok(())
    }

    pub(super) fn set_pending(&self, why: String) {
        self.state.store(Arc::new(State::Pending(why)));
    }

    pub(super) fn files(&self) -> Vec<PathBuf> {
        match &self.source {
            None => Vec::new(),
            Some(IdentitySource::InCluster) => IN_CLUSTER_FILES.iter().map(PathBuf::from).collect(),
            Some(IdentitySource::Kubeconfig(path)) => match Loaded::read(path) {
                Ok(loaded) => loaded.files(),
                Err(_) => vec![path.clone()],
            },
        }
    }
}

/// A client of its own from the kubeconfig at `path` (for the join's bootstrap credentials,
/// which serve no other call).
pub fn client_for(path: &std::path::Path) -> Result<kube::Client, ClientError> {
    build(&IdentitySource::Kubeconfig(path.to_path_buf())).map(|r| r.client)
}

/// Builds a client from `source`, refusing a client certificate that does not load or whose
/// key does not match (kube would only find out at the first handshake).
fn build(source: &IdentitySource) -> Result<Ready, ClientError> {
    crate::crypto::install_default_provider();
    let (mut config, not_after) = match source {
        IdentitySource::Kubeconfig(path) => {
            let err = |e: &dyn std::fmt::Display| ClientError::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            };
            let loaded = Loaded::read(path).map_err(|e| err(&e))?;
            let pair = loaded.client_pair().map_err(|e| err(&e))?;
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| err(&e))?;
            // kube's loader is async in signature only (ConfigLoader::load calls the synchronous
            // load_from_kubeconfig), so it completes on the first poll; building stays usable
            // from a reload source, which is synchronous.
            let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .now_or_never()
                .ok_or_else(|| err(&"the kubeconfig loader did not complete at once (an exec plugin?)"))?
                .map_err(|e| err(&e))?;
            (config, pair.map(|p| p.not_after))
        }
        IdentitySource::InCluster => (
            kube::Config::incluster().map_err(|e| ClientError::InCluster(e.to_string()))?,
            None,
        ),
    };
    config.connect_timeout = Some(Duration::from_secs(1));
    // kube retries 429/503/504 on its own (up to 15 times); the retry policy here is the
    // kubelet's, counted and bounded by the deadline, so kube's must be off.
    config.default_retry = false;
    let client = kube::Client::try_from(config).map_err(|e| ClientError::Client(e.to_string()))?;
    Ok(Ready { client, not_after })
}

/// The kubeconfig (or the service account files) behind the API client, and the certificate,
/// key and token files it names: a change to any of them builds the client again. A pair that
/// does not load, or a key that does not match, is refused and the previous client stays.
pub struct IdentityFiles {
    pub api: Arc<ApiClient>,
}

impl crate::reload::Source for IdentityFiles {
    fn what(&self) -> &'static str {
        "API client identity"
    }

    fn files(&self) -> Vec<PathBuf> {
        self.api.identity_files()
    }

    fn apply(&self, _contents: &[Vec<u8>]) -> Result<(), String> {
        self.api.rebuild().map_err(|e| e.to_string())
    }
}
