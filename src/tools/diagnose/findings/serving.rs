//! The serving side: the certificate the node presents, judged as Go's `crypto/x509` judges it
//! for kube-apiserver (`x509`), what a caller without credentials gets, and the node's clock.
//! Each check shows one of Go's rules on its own; the error kube-apiserver reports is the
//! first one Go's own order meets (`verify_server_certificate`).

use rustls_pki_types::CertificateDer;

use super::super::cert::{self, Facts};
use super::super::connect::Probe;
use super::super::x509::error::{InvalidReason, Window, X509Error};
use super::super::x509::hostname::verify_hostname;
use super::super::x509::tls::{MAX_RSA_KEY_SIZE, TlsError};
use super::super::x509::verify::validity;
use super::super::x509::{self, CertPool, VerifyOptions, chain_allows_server_auth};
use super::super::{Check, Trust, Verdict};
use super::{Findings, SELF_SIGNED_FIX, SKEW_WARNING_SECS};

impl Findings<'_> {
    pub(in crate::tools::diagnose) fn certificate(&mut self, chain: &[CertificateDer<'static>], host: &str) {
        let parsed: Result<Vec<(Facts, x509::Certificate)>, String> = chain
            .iter()
            .map(|der| Ok((Facts::parse(der)?, x509::Certificate::parse(der)?)))
            .collect();
        let (facts, certs): (Vec<Facts>, Vec<x509::Certificate>) = match parsed {
            Ok(p) if !p.is_empty() => p.into_iter().unzip(),
            Ok(_) => return self.push(Check::new("chain", Verdict::Fail, "the node sent no certificate")),
            Err(e) => {
                self.note_tls_error(&TlsError::Parse(e.clone()).to_string());
                return self
                    .push(Check::new("chain", Verdict::Fail, "the node's certificate cannot be parsed").error(e));
            }
        };
        let (leaf, go_leaf) = (&facts[0], &certs[0]);
        let severe = self.severe();
        let now = self.now;

        // What kube-apiserver's handshake ends with, in Go's order and words.
        if let Err(e) = x509::verify_server_certificate(&certs, self.trust.map(|t| &t.roots), host, now) {
            self.note_tls_error(&e.to_string());
        }
        self.chain_check(&facts, &certs);

        // The chains to --kubelet-certificate-authority, with the intermediates the node sent.
        let mut intermediates = CertPool::new();
        for c in &certs[1..] {
            intermediates.add(c.clone());
        }
        let trust = self.trust;
        let trusted = trust.map(|t| {
            let opts = VerifyOptions {
                dns_name: host,
                roots: &t.roots,
                intermediates: &intermediates,
                now,
            };
            x509::build(go_leaf, &opts)
        });

        // The kubelet's self-signed certificate.
        let self_signed = cert::self_signed(leaf);
        let c = match (&self_signed, trusted.as_ref().map(Result::is_ok)) {
            (None, _) => Check::new("self-signed", Verdict::Pass, "issued by a CA, not the kubelet's self-signed pair"),
            (Some(what), None) => Check::new("self-signed", Verdict::Warn, format!("the node serves {what}"))
                .evidence("kube-apiserver accepts it only because it does not verify kubelet certificates (no --kubelet-certificate-authority)")
                .fix(SELF_SIGNED_FIX),
            (Some(what), Some(false)) => Check::new("self-signed", Verdict::Fail, format!("the node serves {what}"))
                .evidence("no --kubelet-certificate-authority can trust it: every node makes its own CA")
                .fix(SELF_SIGNED_FIX),
            (Some(what), Some(true)) => Check::new("self-signed", Verdict::Warn, format!("the node serves {what}"))
                .evidence("the CA file trusts this node's own CA: that works for this one node only")
                .fix(SELF_SIGNED_FIX),
        };
        self.push(c);

        self.names_check(leaf, go_leaf, host);
        self.validity_check(leaf, go_leaf, self_signed.is_some());

        // Server-auth usage: Go checks it last, across each chain it built (the leaf alone when
        // there is none).
        let usage_ok = match &trusted {
            Some(Ok(chains)) => chains.iter().any(|c| chain_allows_server_auth(c)),
            _ => chain_allows_server_auth(&[go_leaf]),
        };
        let usages = format!("extended key usages: {}", leaf.usages());
        let c = if usage_ok {
            Check::new("server-auth", Verdict::Pass, "usable as a serving certificate").evidence(usages)
        } else if !chain_allows_server_auth(&[go_leaf]) {
            Check::new("server-auth", severe, "this is not a serving certificate: no serverAuth usage")
                .error(X509Error::invalid(InvalidReason::IncompatibleUsage, &go_leaf.subject).to_string())
                .evidence(usages)
                .fix("A client certificate (such as kubelet-client-current.pem) is configured as the serving certificate (tlsCertFile). Serve one with the serverAuth usage: the kubelet's kubelet-server-current.pem, or a certificate issued for serving.")
        } else {
            let mut c = Check::new("server-auth", severe, "a CA in the chain restricts what it signs to other usages than serverAuth")
                .error(X509Error::invalid(InvalidReason::IncompatibleUsage, &go_leaf.subject).to_string())
                .evidence(usages)
                .fix("Go requires serverAuth (or no extended key usage) on every CA of the chain: re-issue that intermediate CA without the restriction, or with serverAuth.");
            for (f, g) in facts.iter().zip(&certs).skip(1) {
                if !chain_allows_server_auth(&[g]) {
                    c = c.evidence(format!("{}: {}", f.subject, f.usages()));
                }
            }
            c
        };
        self.push(c);

        // Verification against --kubelet-certificate-authority.
        let c = match (trust, &trusted) {
            (None, _) | (_, None) => Check::new("trust", Verdict::Warn, "not verified (insecure): kube-apiserver runs without --kubelet-certificate-authority and accepts any certificate from this address, a man in the middle's included")
                .fix("Set --kubelet-certificate-authority on kube-apiserver to the CA that signs kubelet serving certificates, and run diagnose with it to see what that would break."),
            (Some(t), Some(Ok(_))) => Check::new("trust", Verdict::Pass, format!("the chain reaches a CA in {}", t.path)),
            (Some(t), Some(Err(e))) => trust_failure(t, e, &facts, self_signed.is_some()),
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

    /// Who issued it, and what Go refuses before any name or chain: an RSA key over 8192 bits
    /// (even without verification), a critical extension it does not handle.
    fn chain_check(&mut self, facts: &[Facts], certs: &[x509::Certificate]) {
        let leaf = &facts[0];
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
        if let Some(big) = certs
            .iter()
            .find(|g| g.public_key.rsa_bits().is_some_and(|b| b > MAX_RSA_KEY_SIZE))
        {
            c.verdict = Verdict::Fail;
            c.summary = format!(
                "{} has an RSA key of more than {MAX_RSA_KEY_SIZE} bits: Go's TLS client refuses it, verifying or not",
                big.subject
            );
            c = c
                .error(TlsError::RsaKeyTooLarge.to_string())
                .fix("Issue the certificate with a smaller key: RSA 2048 to 4096 bits, or ECDSA P-256.");
        } else if certs[0].unhandled_critical_extension {
            c.verdict = self.severe();
            c.summary = "the serving certificate has a critical extension Go does not handle".into();
            c = c
                .error(
                    X509Error::UnhandledCriticalExtension {
                        subject: certs[0].subject.clone(),
                    }
                    .to_string(),
                )
                .fix("Issue it again without that critical extension (or with it marked non-critical).");
        }
        self.push(c);
    }

    /// The dialled name against the SANs.
    fn names_check(&mut self, leaf: &Facts, go_leaf: &x509::Certificate, host: &str) {
        let severe = self.severe();
        let dialled = match &self.via {
            Some(kind) => format!("kube-apiserver dials {host} (the Node's {kind})"),
            None => format!("kube-apiserver dials {host}"),
        };
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let c = match verify_hostname(go_leaf, host) {
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
                .error(e.to_string())
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
    }

    /// The leaf's validity window, and rotation.
    fn validity_check(&mut self, leaf: &Facts, go_leaf: &x509::Certificate, self_signed: bool) {
        let severe = self.severe();
        let now = self.now;
        let lifetime = (leaf.not_after - leaf.not_before).max(1);
        let window = format!(
            "valid from {} to {} (now {})",
            cert::rfc3339(leaf.not_before),
            cert::rfc3339(leaf.not_after),
            cert::rfc3339(now)
        );
        let c = match validity(go_leaf, now) {
            Err(e) if now > leaf.not_after => Check::new("validity", severe, "the serving certificate has expired")
                .error(e.to_string())
                .evidence(window)
                .fix("Renew it. A self-signed kubelet.crt is never renewed in place: delete kubelet.crt and kubelet.key in the kubelet's cert dir (/var/lib/kubelet/pki) and restart the kubelet (kubelet-gate regenerates an expired self-signed certificate itself). With serverTLSBootstrap, look at the node's serving CSRs and the kubelet's log for rotation errors."),
            Err(e) => Check::new("validity", severe, "the serving certificate is not valid yet")
                .error(e.to_string())
                .evidence(window)
                .fix("Its validity starts in the future: the clock of whoever issued it is ahead of this machine's, or this machine's is behind. Fix the clocks (NTP) of the node, kube-apiserver's host and the signer; the certificate becomes usable at its notBefore."),
            Ok(()) => {
                let elapsed = (now - leaf.not_before) as f64 / lifetime as f64;
                let days_left = (leaf.not_after - now) / 86_400;
                if elapsed > 0.9 && !self_signed {
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

/// The trust check when Go finds no chain: what it met, and what to do about it.
fn trust_failure(t: &Trust, e: &X509Error, facts: &[Facts], self_signed: bool) -> Check {
    let leaf = &facts[0];
    let not_in_bundle = format!(
        "The certificate was issued by {}, which is not in {}. Add that CA to kube-apiserver's --kubelet-certificate-authority bundle, or re-issue the node's serving certificate from a CA in it.",
        facts.last().map_or(leaf.issuer.as_str(), |f| f.issuer.as_str()),
        t.path
    );
    let mut c = match e {
        X509Error::Invalid {
            reason: InvalidReason::Expired,
            window,
            subject,
        } => {
            let expired = matches!(window, Some((_, Window::After { .. })));
            Check::new(
                "trust",
                Verdict::Fail,
                format!(
                    "{subject}, a CA in the chain to {}, {}",
                    t.path,
                    if expired { "has expired" } else { "is not valid yet" }
                ),
            )
            .fix(if expired {
                "Renew that CA certificate (the same key with a new validity keeps what it signed valid) and give the renewed certificate to kube-apiserver's --kubelet-certificate-authority and to every node that sends it; or re-issue the node's certificate from a CA that is valid now."
            } else {
                "Its validity starts in the future: the clock of whoever made it is ahead, or this machine's is behind. Fix the clocks (NTP); the CA becomes usable at its notBefore."
            })
        }
        X509Error::UnknownAuthority { hint: Some(h), .. } => {
            let fix = if self_signed {
                SELF_SIGNED_FIX.to_owned()
            } else if h.error.contains("insecure algorithm") {
                "Go refuses SHA-1 (and MD5) signatures on certificates: re-issue the certificate signed with SHA-256 or better.".to_owned()
            } else {
                format!(
                    "{} in {} has the issuer's name but did not sign this certificate (another key: a CA made again under the same name?). Put the CA that really signed it in --kubelet-certificate-authority, or re-issue the node's serving certificate from the CA in it.",
                    h.authority, t.path
                )
            };
            Check::new(
                "trust",
                Verdict::Fail,
                format!("the chain does not reach a CA in {}", t.path),
            )
            .evidence(format!(
                "{} has the right name but was refused as the issuer: {}",
                h.authority, h.error
            ))
            .fix(fix)
        }
        _ => Check::new(
            "trust",
            Verdict::Fail,
            format!("the chain does not reach a CA in {}", t.path),
        )
        .fix(if self_signed {
            SELF_SIGNED_FIX.to_owned()
        } else {
            not_in_bundle
        }),
    };
    c.error = Some(e.to_string());
    c.evidence(format!("issuer of the certificate: {}", leaf.issuer))
        .evidence(format!("CAs in {}: {}", t.path, t.subjects.join("; ")))
}
