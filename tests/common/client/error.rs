//! Why a send failed ([`ClientError`]), and the rustls error or TLS alert behind a failure, from
//! an `io::Error`, a hyper error, or h2's flattened text.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

/// Why `send` failed.
#[derive(Debug)]
pub enum ClientError {
    /// TCP connect failed.
    Connect(io::Error),
    /// The TLS handshake failed (the rustls error is inside; see [`ClientError::alert`]).
    Handshake(io::Error),
    /// The HTTP exchange failed (incl. a TLS 1.3 alert arriving after the handshake).
    Http(hyper::Error),
    Timeout(Duration),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "TCP connect failed: {e}"),
            ClientError::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            ClientError::Http(e) => {
                write!(f, "HTTP exchange failed: {e}")?;
                let mut src = e.source();
                while let Some(s) = src {
                    write!(f, ": {s}")?;
                    src = s.source();
                }
                Ok(())
            }
            ClientError::Timeout(d) => write!(f, "timed out after {d:?}"),
        }
    }
}

impl StdError for ClientError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ClientError::Connect(e) | ClientError::Handshake(e) => Some(e),
            ClientError::Http(e) => Some(e),
            ClientError::Timeout(_) => None,
        }
    }
}

impl ClientError {
    /// The rustls error behind this failure, if any (handshake, or an alert mid-exchange
    /// over HTTP/1.1; h2 keeps only its text: use [`ClientError::alert`]).
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        match self {
            ClientError::Connect(_) | ClientError::Timeout(_) => None,
            ClientError::Handshake(e) => rustls_error_of(e),
            ClientError::Http(e) => find_rustls_error(e),
        }
    }
    /// The TLS alert received from the server, if that is what ended the connection. Over
    /// h2 the rustls error is flattened to text by the h2 crate, so this also reads the
    /// "received fatal alert: <Name>" message.
    pub fn alert(&self) -> Option<rustls::AlertDescription> {
        if let Some(rustls::Error::AlertReceived(a)) = self.rustls_error() {
            return Some(*a);
        }
        let mut cur: Option<&(dyn StdError + 'static)> = self.source();
        while let Some(err) = cur {
            if let Some(a) = alert_from_message(&err.to_string()) {
                return Some(a);
            }
            cur = err.source();
        }
        None
    }
    pub fn is_handshake(&self) -> bool {
        matches!(self, ClientError::Handshake(_))
    }
}

/// The rustls error inside an io::Error from a TLS stream, if any.
pub fn rustls_error_of(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The TLS alert received from the peer, if that is what this io::Error reports.
pub fn alert_of(e: &io::Error) -> Option<rustls::AlertDescription> {
    match rustls_error_of(e) {
        Some(rustls::Error::AlertReceived(a)) => Some(*a),
        _ => None,
    }
}

/// Reads "received fatal alert: <Name>" (rustls's Display of `Error::AlertReceived`).
fn alert_from_message(msg: &str) -> Option<rustls::AlertDescription> {
    const MARK: &str = "received fatal alert: ";
    let at = msg.find(MARK)? + MARK.len();
    let name: String = msg[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '(' || *c == ')')
        .collect();
    (0..=u8::MAX)
        .map(rustls::AlertDescription::from)
        .find(|a| format!("{a:?}") == name)
}

fn find_rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err.downcast_ref::<io::Error>().and_then(rustls_error_of) {
            return Some(r);
        }
        cur = err.source();
    }
    None
}
