//! The approver's and kube-controller-manager's parts: what [`Mode`] does to a CSR right after
//! it is stored, and the conditions and certificate they write, each change its own resource
//! version and MODIFIED event.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::cluster::CLIENT_KUBELET_SIGNER;
use super::csr::{parse_csr, validate_kubelet_client, validate_kubelet_serving};
use super::meta::rfc3339;
use super::record::conditions_of;
use super::store::{Inner, Res, b64, decoded, status_object, str_at, str_list};
use super::{APPROVE_MESSAGE, APPROVE_REASON, FAILED_REASON, KUBELET_SERVING_SIGNER, lock};
use crate::common::pki::chain_pem;

/// What happens to each new CSR, right after it is stored (the 201 answer always shows it
/// pending). The automatic modes act like an approver plus kube-controller-manager's signer:
/// every change is its own resource version and MODIFIED event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Left pending until the test calls `approve`/`deny`/`fail`/`issue` (the default, and what a
    /// real cluster does: nothing auto-approves `kubelet-serving` CSRs).
    #[default]
    Pending,
    /// Approved ([`APPROVE_REASON`]) at once, never issued (a signer that is down).
    AutoApprove,
    /// Approved, then issued as [`CsrApi::issue`] does, at once.
    AutoIssue { lifetime: Duration },
    /// Pending for `delay`, then approved and issued.
    AutoIssueAfter { delay: Duration, lifetime: Duration },
    /// Denied at once with this reason and message.
    AutoDeny { reason: String, message: String },
    /// Approved, then `Failed` ([`FAILED_REASON`]) with this message, at once.
    AutoFail { message: String },
}

impl Inner {
    /// Adds a condition the way the approval and status subresources allow: Approved and
    /// Denied exclude each other; an existing condition of the type is kept (no-op).
    pub(super) fn add_condition(&self, name: &str, type_: &str, reason: &str, message: &str) -> Result<(), String> {
        self.modify_csr(name, |object| {
            let conditions = conditions_of(object);
            let has = |t: &str| conditions.iter().any(|c| c.type_ == t);
            if has(type_) {
                return Ok(false);
            }
            if (type_ == "Approved" && has("Denied")) || (type_ == "Denied" && has("Approved")) {
                return Err(format!(
                    "CSR {name}: Approved and Denied conditions are mutually exclusive"
                ));
            }
            let now = rfc3339(SystemTime::now());
            let status = status_object(object);
            let list = status.entry("conditions").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!({
                    "type": type_,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                }));
            }
            Ok(true)
        })
    }

    /// The signer's work on one approved CSR: kubelet-serving checks (a failure becomes a
    /// `Failed` condition, as kube-controller-manager does), then `status.certificate`.
    pub(super) fn issue(&self, name: &str, lifetime: Duration) -> Result<(), String> {
        let (request, signer, usages, expiration, conditions, issued) = {
            let state = lock(&self.state);
            let object = state
                .get(Res::Csr, name)
                .ok_or_else(|| format!("no CertificateSigningRequest {name:?}"))?;
            (
                decoded(object, "/spec/request").unwrap_or_default(),
                str_at(object, "/spec/signerName"),
                str_list(object.pointer("/spec/usages")),
                object.pointer("/spec/expirationSeconds").and_then(Value::as_i64),
                conditions_of(object),
                object.pointer("/status/certificate").is_some(),
            )
        };
        let has = |t: &str| conditions.iter().any(|c| c.type_ == t);
        if !has("Approved") {
            return Err(format!(
                "CSR {name} is not approved: the signer issues only approved CSRs"
            ));
        }
        if has("Denied") || has("Failed") {
            return Err(format!("CSR {name} is denied or failed"));
        }
        if issued {
            return Err(format!("CSR {name} already has a certificate"));
        }
        let csr = parse_csr(&request)?;
        if signer == KUBELET_SERVING_SIGNER
            && let Err(message) = validate_kubelet_serving(&csr, &usages)
        {
            return self.add_condition(name, "Failed", FAILED_REASON, &message);
        }
        if signer == CLIENT_KUBELET_SIGNER
            && let Err(message) = validate_kubelet_client(&csr, &usages)
        {
            return self.add_condition(name, "Failed", FAILED_REASON, &message);
        }
        let ca = if signer == CLIENT_KUBELET_SIGNER {
            &self.client_signer
        } else {
            &self.signer
        };
        // kube-controller-manager: the shorter of its signing duration and expirationSeconds.
        let lifetime = match expiration {
            Some(s) if s > 0 => lifetime.min(Duration::from_secs(s.unsigned_abs())),
            _ => lifetime,
        };
        let leaf = ca.sign(&csr, &usages, lifetime)?;
        let leaf_only = lock(&self.state).leaf_only;
        let mut chain = vec![leaf];
        if !leaf_only {
            chain.push(ca.cert_der());
        }
        let pem = chain_pem(&chain);
        self.modify_csr(name, |object| {
            if object.pointer("/status/certificate").is_some() {
                return Err(format!("CSR {name} already has a certificate"));
            }
            status_object(object).insert("certificate".into(), json!(b64(pem.as_bytes())));
            Ok(true)
        })
    }

    fn approve_and_issue(&self, name: &str, lifetime: Duration) {
        if self
            .add_condition(name, "Approved", APPROVE_REASON, APPROVE_MESSAGE)
            .is_ok()
            && let Err(e) = self.issue(name, lifetime)
        {
            let _ = self.add_condition(name, "Failed", FAILED_REASON, &e);
        }
    }

    /// Applies the mode to a CSR just created (kube-controller-manager takes the client-kubelet
    /// CSRs first, when it runs).
    pub(super) fn apply_mode(self: &Arc<Self>, name: &str, mode: Mode) {
        if self.controller_handles(name).is_some() {
            return;
        }
        match mode {
            Mode::Pending => {}
            Mode::AutoApprove => {
                let _ = self.add_condition(name, "Approved", APPROVE_REASON, APPROVE_MESSAGE);
            }
            Mode::AutoIssue { lifetime } => self.approve_and_issue(name, lifetime),
            Mode::AutoIssueAfter { delay, lifetime } => {
                let weak: Weak<Inner> = Arc::downgrade(self);
                let name = name.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(inner) = weak.upgrade() {
                        inner.approve_and_issue(&name, lifetime);
                    }
                });
            }
            Mode::AutoDeny { reason, message } => {
                let _ = self.add_condition(name, "Denied", &reason, &message);
            }
            Mode::AutoFail { message } => {
                let _ = self.add_condition(name, "Approved", APPROVE_REASON, APPROVE_MESSAGE);
                let _ = self.add_condition(name, "Failed", FAILED_REASON, &message);
            }
        }
    }
}
