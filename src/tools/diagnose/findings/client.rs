//! The client side: kube-apiserver's client certificate as the kubelet's x509 authenticator
//! reads it, whether the node trusts its issuer, and what the node answers when it is presented.

use super::super::cert;
use super::super::connect::{ConnectError, Probe};
use super::super::{Check, ClientIdentity, LOGS_PROBE, Verdict};
use super::{Findings, dn, forbidden_user, same_name};
use crate::authn::user::AUTHENTICATED_GROUP;
use crate::authn::x509::user_from_leaf;

impl Findings<'_> {
    pub(in crate::tools::diagnose) fn client_side(
        &mut self,
        client: Option<&ClientIdentity>,
        requested: bool,
        hints: &[Vec<u8>],
    ) {
        let hint_names: Vec<String> = hints.iter().map(|h| dn(h)).collect();
        let Some(client) = client else {
            let c = if !requested {
                Check::new("client-ca", Verdict::Fail, "the node does not ask for client certificates: kube-apiserver's --kubelet-client-certificate is never sent, and every call is 401")
                    .fix("Set authentication.x509.clientCAFile on the node to the CA that signs kube-apiserver's kubelet client certificate.")
            } else {
                let mut c = Check::new(
                    "client-ca",
                    Verdict::Info,
                    "the node asks for client certificates (pass --kubelet-client-certificate and --kubelet-client-key to check kube-apiserver's)",
                );
                for n in &hint_names {
                    c = c.evidence(format!("accepted issuer: {n}"));
                }
                c
            };
            return self.push(c);
        };
        let leaf = &client.chain[0];

        // The certificate itself, read as the kubelet's x509 authenticator reads it.
        let mut problems = Vec::new();
        if let Err(e) = cert::go_validity(leaf, self.now) {
            problems.push(e);
        }
        if let Err(e) = cert::go_client_usage(leaf) {
            problems.push(format!("{e} (no clientAuth usage)"));
        }
        let identity = match user_from_leaf(&leaf.der) {
            Ok(Some(user)) => Some(user),
            Ok(None) => {
                problems.push("no CN: the kubelet treats a certificate without a CN as no credential".into());
                None
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        let who = identity
            .as_ref()
            .map(|u| format!("user {} groups [{}]", u.name, u.groups.join(" ")));
        let mut c = if problems.is_empty() {
            Check::new(
                "client-certificate",
                Verdict::Pass,
                format!("{} authenticates as {}", client.path, who.clone().unwrap_or_default()),
            )
        } else {
            Check::new("client-certificate", Verdict::Fail, format!("{} cannot authenticate kube-apiserver", client.path))
                .error(problems.join("; "))
                .fix("Issue kube-apiserver's kubelet client certificate again: a CN (the user), O for groups, extended key usage clientAuth, and a current validity (kubeadm certs renew apiserver-kubelet-client).")
        };
        c = c
            .evidence(format!("subject {}; issuer {}", leaf.subject, leaf.issuer))
            .evidence(format!(
                "valid from {} to {}; extended key usages: {}",
                cert::rfc3339(leaf.not_before),
                cert::rfc3339(leaf.not_after),
                leaf.usages()
            ));
        if identity.is_some() {
            c = c.evidence(format!(
                "the kubelet adds {AUTHENTICATED_GROUP}; kubeadm puts this certificate in system:masters or kubeadm:cluster-admins, otherwise bind the user to system:kubelet-api-admin"
            ));
        }
        self.push(c);

        // Does the node trust its issuer?
        let c = if !requested {
            Check::new(
                "client-ca",
                Verdict::Fail,
                "the node does not ask for client certificates: kube-apiserver's is never sent, and every call is 401",
            )
            .fix(format!(
                "Set authentication.x509.clientCAFile on the node to the CA that issued {} ({}).",
                client.path, leaf.issuer
            ))
        } else if hints.is_empty() {
            Check::new(
                "client-ca",
                Verdict::Info,
                "the node asks for a client certificate without naming the CAs it accepts",
            )
        } else {
            let issuers: Vec<&Vec<u8>> = client.chain.iter().map(|f| &f.issuer_raw).collect();
            let known = hints.iter().any(|h| issuers.iter().any(|i| same_name(h, i)));
            let mut c = if known {
                Check::new(
                    "client-ca",
                    Verdict::Pass,
                    format!("the node accepts client certificates from {}", leaf.issuer),
                )
            } else {
                Check::new("client-ca", Verdict::Fail, format!("the node does not trust {}, the issuer of kube-apiserver's client certificate", leaf.issuer))
                    .fix(format!(
                        "Add the CA that issued {} to the node's authentication.x509.clientCAFile, or issue kube-apiserver's kubelet client certificate from a CA the node trusts.",
                        client.path
                    ))
            };
            for n in &hint_names {
                c = c.evidence(format!("accepted issuer: {n}"));
            }
            c
        };
        self.push(c);
    }

    pub(in crate::tools::diagnose) fn client_probes(
        &mut self,
        client: &ClientIdentity,
        healthz: &Result<Probe, String>,
        logs: &Result<Probe, String>,
    ) {
        let bind = |user: &str| {
            format!(
                "Grant it the kubelet API: kubectl create clusterrolebinding kube-apiserver-kubelet-api-admin --clusterrole=system:kubelet-api-admin --user={user} (kubeadm instead puts the certificate in the group system:masters or kubeadm:cluster-admins)."
            )
        };
        let cn = client.chain[0].cn.clone();
        let mut unauthorized = false;
        let c = match healthz {
            Err(e) => Check::new("client-probe", Verdict::Fail, "GET /healthz with kube-apiserver's client certificate: no answer").error(e.clone()),
            Ok(p) => match p.status.as_u16() {
                s if (200..300).contains(&s) => Check::new(
                    "client-probe",
                    Verdict::Pass,
                    format!("GET /healthz with kube-apiserver's client certificate: {s}, accepted as {cn} and authorized"),
                ),
                401 => {
                    unauthorized = true;
                    Check::new("client-probe", Verdict::Fail, "kube-apiserver's client certificate is not accepted: 401 Unauthorized")
                        .error(p.body.trim_end())
                        .evidence("the node did not verify it against its clientCAFile (another CA, expired, or no clientCAFile), and there was no other credential")
                        .fix(format!(
                            "Make the node trust kube-apiserver's client certificate: add the CA that issued {} to authentication.x509.clientCAFile, or issue the certificate from that CA.",
                            client.path
                        ))
                }
                403 => {
                    let user = forbidden_user(&p.body).unwrap_or_else(|| cn.clone());
                    Check::new(
                        "client-probe",
                        Verdict::Fail,
                        format!("accepted as {user}, but not authorized: it lacks get nodes/healthz (or nodes/proxy)"),
                    )
                    .error(p.body.trim_end())
                    .fix(bind(&user))
                }
                s => Check::new(
                    "client-probe",
                    Verdict::Warn,
                    format!("GET /healthz with kube-apiserver's client certificate: accepted and authorized, but the node answered {s}"),
                )
                .evidence(p.body.trim_end()),
            },
        };
        self.push(c);

        // What kubectl logs reports is the kubelet's answer to that request, not to /healthz
        // (whose 403 names other subresources); /healthz's only when that request got none.
        let answer = |p: &Probe| format!("{} {}", p.status.as_u16(), p.body.trim_end());
        let refused = |p: &&Probe| matches!(p.status.as_u16(), 401 | 403);
        if let Some(p) = logs.as_ref().ok().filter(refused).or(healthz
            .as_ref()
            .ok()
            .filter(refused)
            .filter(|_| logs.is_err()))
        {
            self.kubelet_error.get_or_insert_with(|| answer(p));
        }

        let c = match logs {
            _ if unauthorized => Check::new(
                "logs-probe",
                Verdict::Info,
                "not tried: the client certificate is not accepted",
            ),
            Err(e) => Check::new("logs-probe", Verdict::Warn, format!("GET {LOGS_PROBE}: no answer")).error(e.clone()),
            Ok(p) if p.status.as_u16() == 403 => {
                let user = forbidden_user(&p.body).unwrap_or_else(|| cn.clone());
                Check::new(
                    "logs-probe",
                    Verdict::Fail,
                    format!("kubectl logs would be refused: {user} lacks get nodes/proxy"),
                )
                .error(p.body.trim_end())
                .evidence(
                    "exec, attach and port-forward need nodes/proxy too (through kubelet-gate with the verb create)",
                )
                .fix(bind(&user))
            }
            Ok(p) if p.status.as_u16() == 401 => Check::new(
                "logs-probe",
                Verdict::Fail,
                "kubectl logs would be refused: 401 Unauthorized",
            )
            .error(p.body.trim_end()),
            Ok(p) => Check::new(
                "logs-probe",
                Verdict::Pass,
                format!(
                    "authorized for get nodes/proxy, what kubectl logs needs (GET of a pod that does not exist: {})",
                    p.status.as_u16()
                ),
            ),
        };
        self.push(c);
    }

    pub(in crate::tools::diagnose) fn client_connect_failed(&mut self, e: &ConnectError) {
        let c = Check::new(
            "client-probe",
            Verdict::Fail,
            "cannot connect with kube-apiserver's client certificate",
        )
        .error(&e.message);
        self.push(c);
    }
}
