//! `(*Certificate).Verify` for a TLS client (golang/go src/crypto/x509/verify.go): the leaf's
//! own validity first (`isValid`), then the dialled name (`VerifyHostname`), then the chains
//! to the roots (`buildChains`, which checks each candidate issuer's signature and validity),
//! and the extended key usage last, across each chain (`checkChainForKeyUsage`).

use super::certificate::{CertPool, Certificate, PublicKey};
use super::error::{Hint, InvalidReason, Window, X509Error};
use super::hostname::verify_hostname;
use super::signature::check_signature_from;

/// `maxChainSignatureChecks`.
const MAX_CHAIN_SIGNATURE_CHECKS: usize = 100;

/// `VerifyOptions` as crypto/tls fills them for a client (`verifyServerCertificate`): the
/// server name, the roots, the certificates the server sent after its leaf, and the clock.
/// `KeyUsages` is always `[ServerAuth]`.
pub struct VerifyOptions<'a> {
    pub dns_name: &'a str,
    pub roots: &'a CertPool,
    pub intermediates: &'a CertPool,
    pub now: i64,
}

/// A chain, leaf first.
pub type Chain<'a> = Vec<&'a Certificate>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertType {
    Leaf,
    Intermediate,
    Root,
}

/// `Verify`: the chains that hold, or the first error Go reports.
pub fn verify<'a>(leaf: &'a Certificate, opts: &VerifyOptions<'a>) -> Result<Vec<Chain<'a>>, X509Error> {
    is_valid(leaf, CertType::Leaf, &[], opts.now)?;
    if !opts.dns_name.is_empty() {
        verify_hostname(leaf, opts.dns_name)?;
    }
    let chains = build(leaf, opts)?;
    let usable: Vec<Chain<'a>> = chains.into_iter().filter(|c| chain_allows_server_auth(c)).collect();
    if usable.is_empty() {
        return Err(X509Error::invalid(InvalidReason::IncompatibleUsage, &leaf.subject));
    }
    Ok(usable)
}

/// The chains from `leaf` to the roots, judged as `Verify` judges them but without the leaf's
/// own validity, name and key usage: "who signed it, and are they valid".
pub fn build<'a>(leaf: &'a Certificate, opts: &VerifyOptions<'a>) -> Result<Vec<Chain<'a>>, X509Error> {
    if opts.roots.contains(leaf) {
        return Ok(vec![vec![leaf]]);
    }
    let mut sig_checks = 0;
    build_chains(leaf, &[leaf], &mut sig_checks, opts)
}

/// `isValid`, for what a chain built from a server's certificates can meet. Name constraints
/// are not checked here (see `x509`'s module comment).
fn is_valid(c: &Certificate, kind: CertType, current: &[&Certificate], now: i64) -> Result<(), X509Error> {
    if c.unhandled_critical_extension {
        return Err(X509Error::UnhandledCriticalExtension {
            subject: c.subject.clone(),
        });
    }
    if let Some(child) = current.last()
        && child.raw_issuer != c.raw_subject
    {
        // Never reached through findPotentialParents, which matches names.
        return Err(X509Error::invalid(InvalidReason::NameMismatch, &c.subject));
    }
    validity(c, now)?;
    if kind == CertType::Intermediate && (!c.basic_constraints_valid || !c.is_ca) {
        return Err(X509Error::invalid(InvalidReason::NotAuthorizedToSign, &c.subject));
    }
    if c.basic_constraints_valid && c.max_path_len >= 0 {
        let intermediates = i64::try_from(current.len()).unwrap_or(i64::MAX) - 1;
        if intermediates > c.max_path_len {
            return Err(X509Error::invalid(InvalidReason::TooManyIntermediates, &c.subject));
        }
    }
    Ok(())
}

/// `isValid`'s time check: `now` inside `[NotBefore, NotAfter]`.
pub fn validity(c: &Certificate, now: i64) -> Result<(), X509Error> {
    if now < c.not_before {
        return Err(X509Error::expired(
            now,
            Window::Before {
                not_before: c.not_before,
            },
            &c.subject,
        ));
    }
    if now > c.not_after {
        return Err(X509Error::expired(
            now,
            Window::After { not_after: c.not_after },
            &c.subject,
        ));
    }
    Ok(())
}

/// `alreadyInChain`: the same subject, key and SANs as a certificate already in the chain.
fn already_in_chain(candidate: &Certificate, chain: &[&Certificate]) -> bool {
    chain.iter().any(|c| {
        c.raw_subject == candidate.raw_subject
            && c.raw_spki == candidate.raw_spki
            && match (&candidate.san_value, &c.san_value) {
                (None, None) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            }
    })
}

/// `buildChains`, including its one quirk that decides the message: `err` is the outcome of
/// the last candidate that got past its signature check (an issuer that is not valid now, or
/// the error of the chains above an intermediate), and only when no candidate got that far is
/// the answer `UnknownAuthorityError`, with the first rejection as its hint.
fn build_chains<'a>(
    c: &'a Certificate,
    current: &[&'a Certificate],
    sig_checks: &mut usize,
    opts: &VerifyOptions<'a>,
) -> Result<Vec<Chain<'a>>, X509Error> {
    let mut chains: Vec<Chain<'a>> = Vec::new();
    let mut err: Option<X509Error> = None;
    let mut hint: Option<Hint> = None;
    'candidates: for (kind, pool) in [
        (CertType::Root, opts.roots),
        (CertType::Intermediate, opts.intermediates),
    ] {
        for candidate in pool.find_potential_parents(c) {
            *sig_checks += 1;
            if *sig_checks > MAX_CHAIN_SIGNATURE_CHECKS {
                err = Some(X509Error::SignatureLimit);
                break 'candidates;
            }
            if candidate.public_key == PublicKey::Unknown || already_in_chain(candidate, current) {
                continue;
            }
            if let Err(e) = check_signature_from(c, candidate) {
                note(&mut hint, e.to_string(), candidate);
                continue;
            }
            match is_valid(candidate, kind, current, opts.now) {
                Err(e) => {
                    note(&mut hint, e.to_string(), candidate);
                    err = Some(e);
                    continue;
                }
                Ok(()) => err = None,
            }
            let mut extended = current.to_vec();
            extended.push(candidate);
            match kind {
                CertType::Root => chains.push(extended),
                CertType::Intermediate | CertType::Leaf => match build_chains(candidate, &extended, sig_checks, opts) {
                    Ok(found) => chains.extend(found),
                    Err(e) => {
                        let limit = e == X509Error::SignatureLimit;
                        err = Some(e);
                        if limit {
                            break 'candidates;
                        }
                    }
                },
            }
        }
    }
    if !chains.is_empty() {
        return Ok(chains);
    }
    Err(err.unwrap_or(X509Error::UnknownAuthority {
        subject: c.subject.clone(),
        hint,
    }))
}

/// The first rejected candidate is the hint.
fn note(hint: &mut Option<Hint>, error: String, candidate: &Certificate) {
    hint.get_or_insert_with(|| Hint {
        error,
        authority: candidate.authority_name(),
    });
}

/// `checkChainForKeyUsage` with `[ExtKeyUsageServerAuth]`: from the root down, every
/// certificate that restricts its usages must allow server auth (or any usage).
pub fn chain_allows_server_auth(chain: &[&Certificate]) -> bool {
    chain.iter().rev().all(|c| match &c.ext_key_usage {
        None => true,
        Some(e) if e.count == 0 => true,
        Some(e) => e.any || e.server_auth,
    })
}
