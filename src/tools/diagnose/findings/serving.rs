//! The serving side: the certificate the node presents, judged as Go's `crypto/x509` judges it
//! for kube-apiserver, what a caller without credentials gets, and the node's clock.

use rustls_pki_types::CertificateDer;

use super::super::cert::{self, Facts};
use super::super::connect::Probe;
use super::super::{Check, Verdict};
use super::{Findings, SELF_SIGNED_FIX, SKEW_WARNING_SECS, midpoint};

impl Findings<'_> {
    pub(in crate::tools::diagnose) fn certificate(&mut self, chain: &[CertificateDer<'static>], host: &str) {
        let facts: Result<Vec<Facts>, String> = chain.iter().map(Facts::parse).collect();
        let facts = match facts {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => return self.push(Check::new("chain", Verdict::Fail, "the node sent no certificate")),
            Err(e) => {
                return self
                    .push(Check::new("chain", Verdict::Fail, "the node's certificate cannot be parsed").error(e));
            }
        };
        let leaf = &facts[0];
        let severe = self.severe();
        let now = self.now;

        // Who issued it.
        let mut c = Check::new(
            "chain",
            Verdict::Info,
            format!("{} issued by {}", leaf.subject, leaf.issuer),
        );
        for (i, f) in facts.iter().enumerate() {
            c = c.evidence(format!(
                "[{i}] subject {}; issuer {}; serial {}; {}; sha256 {}",
                f.subject,
                f.issuer,
                f.serial,
                f.sans(),
                &f.sha256[..16.min(f.sha256.len())]
            ));
        }
        self.push(c);

        // The kubelet's self-signed certificate.
        let self_signed = cert::self_signed(leaf);
        let trusted = self.trust.map(|t| {
            cert::trust(
                &facts,
                &t.roots,
                &t.ders,
                if leaf.valid_at(now) { now } else { midpoint(leaf) },
            )
        });
        let c = match (&self_signed, &trusted) {
            (None, _) => Check::new("self-signed", Verdict::Pass, "issued by a CA, not the kubelet's self-signed pair"),
            (Some(what), None) => Check::new("self-signed", Verdict::Warn, format!("the node serves {what}"))
                .evidence("kube-apiserver accepts it only because it does not verify kubelet certificates (no --kubelet-certificate-authority)")
                .fix(SELF_SIGNED_FIX),
            (Some(what), Some(Err(_))) => Check::new("self-signed", Verdict::Fail, format!("the node serves {what}"))
                .evidence("no --kubelet-certificate-authority can trust it: every node makes its own CA")
                .fix(SELF_SIGNED_FIX),
            (Some(what), Some(Ok(()))) => Check::new("self-signed", Verdict::Warn, format!("the node serves {what}"))
                .evidence("the CA file trusts this node's own CA: that works for this one node only")
                .fix(SELF_SIGNED_FIX),
        };
        self.push(c);

        // Go's order: validity, usage, name, chain.
        let validity = cert::go_validity(leaf, now);
        let usage = cert::go_server_usage(leaf);
        let names = cert::go_verify_hostname(leaf, host);
        if self.trust.is_some() {
            let first = validity
                .as_ref()
                .err()
                .or(usage.as_ref().err())
                .or(names.as_ref().err())
                .or(trusted.as_ref().and_then(|t| t.as_ref().err()));
            if let Some(e) = first {
                self.note_tls_error(&e.clone());
            }
        }

        // The dialled name against the SANs.
        let dialled = match &self.via {
            Some(kind) => format!("kube-apiserver dials {host} (the Node's {kind})"),
            None => format!("kube-apiserver dials {host}"),
        };
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let c = match &names {
            Ok(()) => {
                Check::new("names", Verdict::Pass, format!("the certificate is valid for {host}")).evidence(leaf.sans())
            }
            Err(e) => {
                let fix = if is_ip {
                    format!(
                        "Issue the serving certificate with an IP SAN for {host}: with serverTLSBootstrap the kubelet puts the Node's addresses in its serving CSR (make sure they are known, then remove kubelet-server-current.pem and restart it to request a new one); kubelet-gate's self-signed certificate carries an IP SAN for every nodeAddresses entry. Or make kube-apiserver dial a name the certificate has (--kubelet-preferred-address-types=Hostname,...)."
                    )
                } else {
                    format!(
                        "Issue the serving certificate with a DNS SAN for {host}, or change kube-apiserver's --kubelet-preferred-address-types so that it dials an address the certificate names."
                    )
                };
                let mut c = Check::new(
                    "names",
                    severe,
                    format!("the certificate is not valid for {host}, the address kube-apiserver dials"),
                )
                .error(e.clone())
                .evidence(format!(
                    "{dialled}{}",
                    if is_ip {
                        ": an IP address, which Go matches against IP SANs only (never the CN or DNS names)"
                    } else {
                        ""
                    }
                ))
                .evidence(leaf.sans())
                .fix(fix);
                if self.trust.is_none() {
                    c.evidence
                        .push("kube-apiserver does not check names without --kubelet-certificate-authority".into());
                }
                c
            }
        };
        self.push(c);

        // Validity window and rotation.
        let lifetime = (leaf.not_after - leaf.not_before).max(1);
        let window = format!(
            "valid from {} to {} (now {})",
            cert::rfc3339(leaf.not_before),
            cert::rfc3339(leaf.not_after),
            cert::rfc3339(now)
        );
        let c = match &validity {
            Err(e) if now > leaf.not_after => Check::new("validity", severe, "the serving certificate has expired")
                .error(e.clone())
                .evidence(window)
                .fix("Renew it. A self-signed kubelet.crt is never renewed in place: delete kubelet.crt and kubelet.key in the kubelet's cert dir (/var/lib/kubelet/pki) and restart the kubelet (kubelet-gate regenerates an expired self-signed certificate itself). With serverTLSBootstrap, look at the node's serving CSRs and the kubelet's log for rotation errors."),
            Err(e) => Check::new("validity", severe, "the serving certificate is not valid yet")
                .error(e.clone())
                .evidence(window)
                .fix("Its validity starts in the future: the clock of whoever issued it is ahead of this machine's, or this machine's is behind. Fix the clocks (NTP) of the node, kube-apiserver's host and the signer; the certificate becomes usable at its notBefore."),
            Ok(()) => {
                let elapsed = (now - leaf.not_before) as f64 / lifetime as f64;
                let days_left = (leaf.not_after - now) / 86_400;
                if elapsed > 0.9 && self_signed.is_none() {
                    Check::new(
                        "validity",
                        Verdict::Warn,
                        format!("valid, but past 90% of its lifetime ({days_left} day(s) left): a rotating kubelet renews between 70% and 90%"),
                    )
                    .evidence(window)
                    .fix("Check the node's serving CSRs and the kubelet's log: rotation seems stuck.")
                } else {
                    Check::new("validity", Verdict::Pass, format!("valid for {days_left} more day(s)")).evidence(window)
                }
            }
        };
        self.push(c);

        // Server-auth usage.
        let c = match &usage {
            Ok(()) => Check::new("server-auth", Verdict::Pass, "usable as a serving certificate").evidence(format!(
                "extended key usages: {}",
                leaf.usages()
            )),
            Err(e) => Check::new("server-auth", severe, "this is not a serving certificate: no serverAuth usage")
                .error(e.clone())
                .evidence(format!("extended key usages: {}", leaf.usages()))
                .fix("A client certificate (such as kubelet-client-current.pem) is configured as the serving certificate (tlsCertFile). Serve one with the serverAuth usage: the kubelet's kubelet-server-current.pem, or a certificate issued for serving."),
        };
        self.push(c);

        // Verification against --kubelet-certificate-authority.
        let c = match (self.trust, &trusted) {
            (None, _) | (_, None) => Check::new("trust", Verdict::Warn, "not verified (insecure): kube-apiserver runs without --kubelet-certificate-authority and accepts any certificate from this address, a man in the middle's included")
                .fix("Set --kubelet-certificate-authority on kube-apiserver to the CA that signs kubelet serving certificates, and run diagnose with it to see what that would break."),
            (Some(t), Some(Ok(()))) => Check::new("trust", Verdict::Pass, format!("the chain reaches a CA in {}", t.path)),
            (Some(t), Some(Err(e))) => {
                let fix = if self_signed.is_some() {
                    SELF_SIGNED_FIX.to_owned()
                } else {
                    format!(
                        "The certificate was issued by {}, which is not in {}. Add that CA to kube-apiserver's --kubelet-certificate-authority bundle, or re-issue the node's serving certificate from a CA in it.",
                        facts.last().map_or(leaf.issuer.as_str(), |f| f.issuer.as_str()),
                        t.path
                    )
                };
                Check::new("trust", Verdict::Fail, format!("the chain does not reach a CA in {}", t.path))
                    .error(e.clone())
                    .evidence(format!("issuer of the certificate: {}", leaf.issuer))
                    .evidence(format!("CAs in {}: {}", t.path, t.subjects.join("; ")))
                    .fix(fix)
            }
        };
        self.push(c);

        // KEP-4872's CN check.
        if let Some(node) = &self.node {
            let want = format!("system:node:{node}");
            let c = if leaf.cn == want {
                Check::new("node-cn", Verdict::Pass, format!("CN is {want}"))
            } else {
                Check::new(
                    "node-cn",
                    Verdict::Info,
                    format!(
                        "CN is {:?}, not {want}: kube-apiserver's KubeletCertCNValidation (alpha, off by default) would refuse it",
                        leaf.cn
                    ),
                )
            };
            self.push(c);
        }
    }

    pub(in crate::tools::diagnose) fn anonymous_probe(&mut self, probe: &Result<Probe, String>) {
        let c = match probe {
            Err(e) => Check::new(
                "anonymous-probe",
                Verdict::Info,
                "GET /healthz without credentials: no answer",
            )
            .error(e.clone()),
            Ok(p) => {
                self.clock(p);
                match p.status.as_u16() {
                    401 => Check::new("anonymous-probe", Verdict::Pass, "GET /healthz without credentials: 401, requests without credentials are refused"),
                    403 => Check::new("anonymous-probe", Verdict::Warn, "GET /healthz without credentials: 403, anonymous authentication is on (reviewed as system:anonymous, then refused)")
                        .evidence(p.body.trim_end())
                        .fix("Set authentication.anonymous.enabled: false on the node."),
                    s if (200..300).contains(&s) => Check::new("anonymous-probe", Verdict::Warn, format!("GET /healthz without credentials: {s}, anyone may call the node API"))
                        .fix("Set authentication.anonymous.enabled: false, and authorization.mode: Webhook."),
                    s => Check::new("anonymous-probe", Verdict::Info, format!("GET /healthz without credentials: {s}"))
                        .evidence(p.body.trim_end()),
                }
            }
        };
        self.push(c);
    }

    fn clock(&mut self, p: &Probe) {
        let Some(date) = p.date.and_then(|d| d.duration_since(std::time::UNIX_EPOCH).ok()) else {
            return self.push(Check::new(
                "clock",
                Verdict::Info,
                "the node sent no Date header: clock skew not measured",
            ));
        };
        let skew = i64::try_from(date.as_secs()).unwrap_or(0) - self.now;
        let evidence = format!(
            "the node's Date header: {}; this machine: {}",
            cert::rfc3339(i64::try_from(date.as_secs()).unwrap_or(0)),
            cert::rfc3339(self.now)
        );
        let c = if skew.abs() > SKEW_WARNING_SECS {
            Check::new(
                "clock",
                Verdict::Warn,
                format!(
                    "the node's clock is {}s {} this machine's",
                    skew.abs(),
                    if skew > 0 { "ahead of" } else { "behind" }
                ),
            )
            .evidence(evidence)
            .fix("Synchronise the clocks (NTP): certificates issued on one side look not-yet-valid or expired on the other. The validity check uses this machine's clock; kube-apiserver uses its own.")
        } else {
            Check::new("clock", Verdict::Pass, "the node's clock agrees with this machine's").evidence(evidence)
        };
        self.push(c);
    }
}
