//! Authentication: who is calling. One chain in the kubelet's order (kubernetes/apiserver
//! pkg/authentication/authenticatorfactory/delegating.go and request/union/union.go): client certificate, then bearer token (static token file, then the TokenReview
//! webhook), then the WebSocket subprotocol token, then anonymous. A presented credential that
//! fails is a 401 even when anonymous access is on; only a request with no credential at all
//! becomes `system:anonymous`.

pub mod bearer;
pub mod connection;
pub mod review_budget;
pub mod secret;
pub mod token_file;
pub mod token_review;
pub mod user;
pub mod websocket;
pub mod x509;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use aws_lc_rs::hmac;

use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, HeaderValue};

use crate::k8s::CallError;
pub use connection::{Connection, PeerIdentity};
use token_file::TokenFile;
use token_review::TokenReviewer;
pub use user::UserInfo;
use x509::ClientCa;

/// Which kind of credential established the identity; recorded for logs and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    ClientCertificate,
    BearerToken,
    WebSocketToken,
    Anonymous,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ClientCertificate => "x509",
            CredentialKind::BearerToken => "token",
            CredentialKind::WebSocketToken => "websocket-token",
            CredentialKind::Anonymous => "anonymous",
        }
    }
}

/// What a request presented, whatever became of it, for the metrics and the audit record, so
/// that nothing after authentication looks at a credential again.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// `none`, `x509` or `token` (a bearer header or a WebSocket protocol token).
    pub kind: &'static str,
    /// The token's HMAC under the audit key (only with an audit log); never the token.
    pub token_hmac: Option<String>,
}

impl Presented {
    /// Before authentication only the connection is known.
    pub fn connection(peer: &PeerIdentity) -> Presented {
        Presented {
            kind: if peer.chain().is_empty() { "none" } else { "x509" },
            token_hmac: None,
        }
    }
}

/// The authentication phase's result.
#[derive(Debug)]
pub struct Authentication {
    pub result: Result<Authenticated, AuthnFailure>,
    pub presented: Presented,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: Arc<UserInfo>,
    pub credential: CredentialKind,
}

/// Why a request was refused before authorization. The reason is for the log only.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthnFailure {
    /// 401 `Unauthorized`.
    Unauthorized(String),
    /// 400: the request is ambiguous (two `Authorization` headers).
    Ambiguous(&'static str),
    /// 431: a token over the size limit, refused without a lookup.
    TooLarge,
    /// 429: the token is not cached and the source's TokenReview budget is spent.
    OverBudget(review_budget::Bound),
}

/// Why no source could say whether a token is known.
enum LookupError {
    OverBudget(review_budget::Bound),
    Failed(String),
}

/// Looks tokens up in the configured sources, in order: the static file, then the TokenReview
/// webhook. The header token and the WebSocket token share them (and the webhook's cache).
pub struct TokenAuthenticators {
    /// Replaced whole when the file is reloaded.
    file: Option<Arc<ArcSwap<TokenFile>>>,
    webhook: Option<TokenReviewer>,
}

impl TokenAuthenticators {
    /// `Ok(None)`: no source knows the token. `Err`: a source could not answer.
    async fn lookup(&self, token: &str, source: IpAddr) -> Result<Option<Arc<UserInfo>>, LookupError> {
        if let Some(user) = self.file.as_ref().and_then(|f| f.load().lookup(token)) {
            return Ok(Some(user));
        }
        match &self.webhook {
            Some(w) => w.authenticate(token, source).await.map_err(|e| match e {
                CallError::OverBudget(bound) => LookupError::OverBudget(bound),
                e => LookupError::Failed(e.to_string()),
            }),
            None => Ok(None),
        }
    }
}

/// The whole chain, built once from the configuration.
pub struct Authenticator {
    client_ca: Option<Arc<ArcSwap<ClientCa>>>,
    tokens: Option<TokenAuthenticators>,
    anonymous: bool,
    /// Client-certificate chains verified (not answered from a connection's remembered verdict).
    chain_verifications: AtomicU64,
    /// The key of the token hashes in audit records; `None` without an audit log.
    audit_key: Option<hmac::Key>,
}

impl Authenticator {
    pub fn new(
        client_ca: Option<Arc<ArcSwap<ClientCa>>>,
        token_file: Option<Arc<ArcSwap<TokenFile>>>,
        webhook: Option<TokenReviewer>,
        anonymous: bool,
    ) -> Self {
        let tokens = (token_file.is_some() || webhook.is_some()).then_some(TokenAuthenticators {
            file: token_file,
            webhook,
        });
        Authenticator {
            client_ca,
            tokens,
            anonymous,
            chain_verifications: AtomicU64::new(0),
            audit_key: None,
        }
    }

    /// Hash presented tokens under `key` for the audit record.
    pub fn with_audit_key(mut self, key: hmac::Key) -> Self {
        self.audit_key = Some(key);
        self
    }

    /// How many client-certificate chains were verified so far.
    pub fn chain_verifications(&self) -> u64 {
        self.chain_verifications.load(Ordering::Relaxed)
    }

    pub fn token_reviewer(&self) -> Option<&TokenReviewer> {
        self.tokens.as_ref().and_then(|t| t.webhook.as_ref())
    }

    /// Authenticates a request, saying what it presented. On success through a token, the
    /// credential is removed from `headers` (the `Authorization` header, or the token entry of
    /// the subprotocol list).
    /// `source` is the client's address, for its TokenReview budget.
    pub async fn authenticate(&self, headers: &mut HeaderMap, peer: &PeerIdentity, source: IpAddr) -> Authentication {
        let presented = self.presented(headers, peer);
        Authentication {
            result: self.chain(headers, peer, source).await,
            presented,
        }
    }

    fn presented(&self, headers: &HeaderMap, peer: &PeerIdentity) -> Presented {
        let token = match bearer::parse(headers) {
            bearer::BearerHeader::Absent => match websocket::extract(headers) {
                Ok(Some(found)) => Some(Some(found.token)),
                Ok(None) => None,
                Err(_) => Some(None),
            },
            bearer::BearerHeader::Token(t) => Some(Some(t.to_owned())),
            _ => Some(None),
        };
        match token {
            None => Presented::connection(peer),
            Some(token) => Presented {
                kind: "token",
                token_hmac: token.zip(self.audit_key.as_ref()).map(|(t, key)| {
                    hmac::sign(key, t.as_bytes())
                        .as_ref()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect()
                }),
            },
        }
    }

    async fn chain(
        &self,
        headers: &mut HeaderMap,
        peer: &PeerIdentity,
        source: IpAddr,
    ) -> Result<Authenticated, AuthnFailure> {
        // Errors of earlier authenticators are kept but do not stop the chain: a later
        // credential that succeeds wins (the API server's non-failing union).
        let mut errors: Vec<String> = Vec::new();
        let mut over_budget = None;
        let mut failed = |e: LookupError, errors: &mut Vec<String>| match e {
            LookupError::OverBudget(bound) => over_budget = Some(bound),
            LookupError::Failed(e) => errors.push(e),
        };

        if let Some(ca) = &self.client_ca {
            match peer.authenticate(&ca.load(), &self.chain_verifications) {
                Ok(Some(user)) => {
                    return Ok(Authenticated {
                        user,
                        credential: CredentialKind::ClientCertificate,
                    });
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }

        if let Some(tokens) = &self.tokens {
            match bearer::parse(headers) {
                bearer::BearerHeader::Absent => {}
                bearer::BearerHeader::Duplicate => {
                    return Err(AuthnFailure::Ambiguous("multiple Authorization headers"));
                }
                bearer::BearerHeader::TooLarge => return Err(AuthnFailure::TooLarge),
                bearer::BearerHeader::Invalid => errors.push("invalid bearer token (not ASCII)".into()),
                bearer::BearerHeader::Token(token) => match tokens.lookup(token, source).await {
                    Err(e) => failed(e, &mut errors),
                    Ok(Some(user)) => {
                        headers.remove(AUTHORIZATION);
                        return Ok(Authenticated {
                            user,
                            credential: CredentialKind::BearerToken,
                        });
                    }
                    Ok(None) => errors.push("invalid bearer token".into()),
                },
            }

            match websocket::extract(headers) {
                Ok(None) => {}
                Err(websocket::ProtocolTokenError::TooLarge) => return Err(AuthnFailure::TooLarge),
                Err(e) => errors.push(e.to_string()),
                Ok(Some(found)) => match tokens.lookup(&found.token, source).await {
                    Err(e) => failed(e, &mut errors),
                    Ok(Some(user)) => {
                        match HeaderValue::from_str(&found.remaining) {
                            Ok(v) => {
                                headers.insert(SEC_WEBSOCKET_PROTOCOL, v);
                            }
                            Err(_) => {
                                headers.remove(SEC_WEBSOCKET_PROTOCOL);
                            }
                        }
                        return Ok(Authenticated {
                            user,
                            credential: CredentialKind::WebSocketToken,
                        });
                    }
                    Ok(None) => errors.push("invalid bearer token".into()),
                },
            }
        }

        // A token that could not be reviewed for the budget is neither known nor unknown: the
        // client may try again (429), unless another credential already failed outright.
        if let Some(bound) = over_budget
            && errors.is_empty()
        {
            return Err(AuthnFailure::OverBudget(bound));
        }
        if !errors.is_empty() {
            return Err(AuthnFailure::Unauthorized(errors.join("; ")));
        }
        if self.anonymous {
            return Ok(Authenticated {
                user: user::anonymous(),
                credential: CredentialKind::Anonymous,
            });
        }
        Err(AuthnFailure::Unauthorized(
            "no credential presented and anonymous access is disabled".into(),
        ))
    }
}
