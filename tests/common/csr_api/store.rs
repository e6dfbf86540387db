//! The objects and their history: the resources served, the live CSRs (every one ever created is
//! kept) and Nodes, the event log watches replay, and the shared state of the serving tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::approver::Mode;
use super::cluster::Cluster;
use super::record::Call;
use super::signer::SignerCa;
use super::{CSR_API_VERSION, CSR_GROUP, lock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Res {
    Csr,
    Node,
}

impl Res {
    pub(super) fn kind(self) -> &'static str {
        match self {
            Res::Csr => "CertificateSigningRequest",
            Res::Node => "Node",
        }
    }
    pub(super) fn api_version(self) -> &'static str {
        match self {
            Res::Csr => CSR_API_VERSION,
            Res::Node => "v1",
        }
    }
    pub(super) fn plural(self) -> &'static str {
        match self {
            Res::Csr => "certificatesigningrequests",
            Res::Node => "nodes",
        }
    }
    pub(super) fn group(self) -> &'static str {
        match self {
            Res::Csr => CSR_GROUP,
            Res::Node => "",
        }
    }
    /// `certificatesigningrequests.certificates.k8s.io`, `nodes`.
    pub(super) fn qualified(self) -> String {
        match self {
            Res::Csr => format!("{}.{}", self.plural(), self.group()),
            Res::Node => self.plural().to_string(),
        }
    }
    /// The value of a supported field selector field, None if the field is not supported.
    pub(super) fn field(self, object: &Value, field: &str) -> Option<String> {
        let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        match (self, field) {
            (_, "metadata.name") => Some(s("/metadata/name")),
            (Res::Csr, "spec.signerName") => Some(s("/spec/signerName")),
            (Res::Node, "spec.unschedulable") => Some(
                object
                    .pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ),
            _ => None,
        }
    }
}

pub(super) struct Event {
    pub(super) rv: u64,
    pub(super) res: Res,
    pub(super) kind: &'static str,
    pub(super) object: Value,
}

pub(super) struct CsrEntry {
    pub(super) object: Value,
    pub(super) deleted: bool,
}

pub(super) struct State {
    pub(super) rv: u64,
    /// Watches from a resourceVersion below this get 410 Expired.
    pub(super) compacted: u64,
    /// Every CSR ever created, in order; `csr_index` maps live names to entries.
    pub(super) csrs: Vec<CsrEntry>,
    pub(super) csr_index: HashMap<String, usize>,
    pub(super) nodes: BTreeMap<String, Value>,
    pub(super) events: Vec<Event>,
    pub(super) mode: Mode,
    pub(super) leaf_only: bool,
    /// The next this many watch requests get 429 Too Many Requests.
    pub(super) failing_watches: u32,
    /// The cluster's part (`cluster.rs`): bootstrap tokens, tokens TokenReview accepts,
    /// ClusterRoleBindings, and kube-controller-manager's approver and client signer.
    pub(super) cluster: Cluster,
}

impl State {
    pub(super) fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub(super) fn live(&self, res: Res) -> Vec<&Value> {
        match res {
            Res::Csr => {
                let mut names: Vec<(&String, &usize)> = self.csr_index.iter().collect();
                names.sort();
                names.into_iter().map(|(_, i)| &self.csrs[*i].object).collect()
            }
            Res::Node => self.nodes.values().collect(),
        }
    }

    pub(super) fn get(&self, res: Res, name: &str) -> Option<&Value> {
        match res {
            Res::Csr => self.csr_index.get(name).map(|i| &self.csrs[*i].object),
            Res::Node => self.nodes.get(name),
        }
    }
}

/// What the serving tasks share. Holds no stop signal, so tasks never keep the server alive.
pub(super) struct Inner {
    pub(super) state: Mutex<State>,
    pub(super) requests: Mutex<Vec<(String, String)>>,
    pub(super) tls: Arc<rustls::ServerConfig>,
    pub(super) identity: String,
    pub(super) signer: Arc<SignerCa>,
    /// The `kubernetes.io/kube-apiserver-client-kubelet` signer; the API server trusts the
    /// client certificates it issues.
    pub(super) client_signer: Arc<SignerCa>,
    pub(super) client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    pub(super) calls: Mutex<Vec<Call>>,
    /// The resource version after every change.
    pub(super) changed: watch::Sender<u64>,
    pub(super) bookmarks: watch::Sender<u64>,
    pub(super) end_watches: watch::Sender<u64>,
    pub(super) connections: AtomicUsize,
}

impl Inner {
    /// Stores a changed CSR under a new resource version and records the event.
    pub(super) fn modify_csr(
        &self,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<bool, String>,
    ) -> Result<(), String> {
        let rv = {
            let mut state = lock(&self.state);
            let index = *state
                .csr_index
                .get(name)
                .ok_or_else(|| format!("no CertificateSigningRequest {name:?}"))?;
            let mut object = state.csrs[index].object.clone();
            if !f(&mut object)? {
                return Ok(());
            }
            let rv = state.bump();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.csrs[index].object = object.clone();
            state.events.push(Event {
                rv,
                res: Res::Csr,
                kind: "MODIFIED",
                object,
            });
            rv
        };
        self.changed.send_replace(rv);
        Ok(())
    }

    /// Removes a live CSR (kept in the record, marked deleted); its last state, or None.
    pub(super) fn delete_csr(&self, name: &str) -> Option<Value> {
        let (rv, object) = {
            let mut state = lock(&self.state);
            let index = state.csr_index.remove(name)?;
            let rv = state.bump();
            let mut object = state.csrs[index].object.clone();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.csrs[index].deleted = true;
            state.csrs[index].object = object.clone();
            state.events.push(Event {
                rv,
                res: Res::Csr,
                kind: "DELETED",
                object: object.clone(),
            });
            (rv, object)
        };
        self.changed.send_replace(rv);
        Some(object)
    }
}

pub(super) fn status_object(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    object["status"].as_object_mut().expect("status is an object")
}

pub(super) fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string()
}

pub(super) fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// A base64 (ByteString) field, decoded.
pub(super) fn decoded(v: &Value, pointer: &str) -> Option<Vec<u8>> {
    let s = v.pointer(pointer).and_then(Value::as_str)?;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

pub(super) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}
