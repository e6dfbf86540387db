//! The WebSocket bearer-token subprotocol (kubernetes/apiserver
//! pkg/authentication/request/websocket/protocol.go): browsers cannot set
//! headers on a WebSocket, so Kubernetes lets them smuggle the token in
//! `Sec-WebSocket-Protocol` as `base64url.bearer.authorization.k8s.io.<token>`.

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use http::header::{CONNECTION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};

use super::bearer::MAX_TOKEN_BYTES;

const TOKEN_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// Go's `base64.RawURLEncoding`, which upstream decodes the token with: URL-safe alphabet, no
/// padding, and (not being `Strict()`) the unused bits of the last character ignored.
pub const RAW_URL_ENCODING: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// A token found in the subprotocol list, with the protocols that remain once it is removed.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolToken {
    pub token: String,
    /// The header value to forward in its place: the remaining protocols joined with `,`.
    pub remaining: String,
}

/// Why a subprotocol token was refused; the messages are the API server's.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolTokenError {
    #[error("multiple base64.bearer.authorization tokens specified")]
    Multiple,
    #[error("invalid base64.bearer.authorization token encoding")]
    Encoding,
    #[error("invalid base64.bearer.authorization token")]
    NotUtf8,
    #[error("missing additional subprotocol")]
    MissingSubprotocol,
    #[error("base64.bearer.authorization token too large")]
    TooLarge,
}

/// `wsstream.IsWebSocketRequest`: `Upgrade: websocket` and an `upgrade` token in any
/// `Connection` header line.
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    let upgrade_is_websocket = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade_is_websocket
        && headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
        })
}

/// Finds the token among the offered subprotocols. `Ok(None)`: not a WebSocket request, no
/// token entry, or an empty token (all "no credential", as upstream).
pub fn extract(headers: &HeaderMap) -> Result<Option<ProtocolToken>, ProtocolTokenError> {
    if !is_websocket_request(headers) {
        return Ok(None);
    }
    let mut encoded: Option<&str> = None;
    let mut remaining: Vec<&str> = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        let Ok(value) = value.to_str() else { continue };
        for protocol in value.split(',').map(str::trim) {
            match protocol.strip_prefix(TOKEN_PREFIX) {
                Some(_) if encoded.is_some() => return Err(ProtocolTokenError::Multiple),
                Some(suffix) => encoded = Some(suffix),
                None => remaining.push(protocol),
            }
        }
    }
    let Some(encoded) = encoded else {
        return Ok(None);
    };
    if encoded.len() > MAX_TOKEN_BYTES * 4 / 3 + 4 {
        return Err(ProtocolTokenError::TooLarge);
    }
    let bytes = RAW_URL_ENCODING
        .decode(encoded)
        .map_err(|_| ProtocolTokenError::Encoding)?;
    let token = String::from_utf8(bytes).map_err(|_| ProtocolTokenError::NotUtf8)?;
    if token.is_empty() {
        return Ok(None);
    }
    // Go's strings.Split keeps empty entries; so does the upstream check, which only asks
    // that something other than the token was offered.
    if remaining.is_empty() {
        return Err(ProtocolTokenError::MissingSubprotocol);
    }
    Ok(Some(ProtocolToken {
        token,
        remaining: remaining.join(","),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use http::HeaderValue;

    fn ws_headers(protocols: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        for p in protocols {
            h.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(p).expect("valid"));
        }
        h
    }

    fn encoded(token: &str) -> String {
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(token))
    }

    #[test]
    fn token_with_another_protocol_is_extracted_and_stripped() {
        let h = ws_headers(&[&format!("{}, v5.channel.k8s.io", encoded("tok"))]);
        assert_eq!(
            extract(&h),
            Ok(Some(ProtocolToken {
                token: "tok".into(),
                remaining: "v5.channel.k8s.io".into()
            }))
        );
        let h = ws_headers(&["v4.channel.k8s.io", &encoded("tok"), "v5.channel.k8s.io"]);
        assert_eq!(
            extract(&h).map(|t| t.map(|t| t.remaining)),
            Ok(Some("v4.channel.k8s.io,v5.channel.k8s.io".into()))
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            extract(&ws_headers(&[&encoded("tok")])),
            Err(ProtocolTokenError::MissingSubprotocol)
        );
        let two = ws_headers(&[&encoded("a"), &encoded("b"), "v5.channel.k8s.io"]);
        assert_eq!(extract(&two), Err(ProtocolTokenError::Multiple));
        let bad = ws_headers(&[&format!("{TOKEN_PREFIX}!!!"), "v5.channel.k8s.io"]);
        assert_eq!(extract(&bad), Err(ProtocolTokenError::Encoding));
        // Padding is not part of RawURLEncoding.
        let padded = ws_headers(&[&format!("{TOKEN_PREFIX}YQ=="), "v5.channel.k8s.io"]);
        assert_eq!(extract(&padded), Err(ProtocolTokenError::Encoding));
        let not_utf8 = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode([0xff, 0xfe]));
        assert_eq!(
            extract(&ws_headers(&[&not_utf8, "v5.channel.k8s.io"])),
            Err(ProtocolTokenError::NotUtf8)
        );
    }

    #[test]
    fn trailing_bits_are_ignored_as_go_does() {
        // `YR`: the `a` of `YQ` with the unused low bits of `R` set. Go's RawURLEncoding is not
        // Strict(), so the API server reads the token `a`.
        let h = ws_headers(&[&format!("{TOKEN_PREFIX}YR"), "v5.channel.k8s.io"]);
        assert_eq!(extract(&h).map(|t| t.map(|t| t.token)), Ok(Some("a".into())));
        // A length that is 1 modulo 4 stays an error in Go too.
        let h = ws_headers(&[&format!("{TOKEN_PREFIX}YWJjZ"), "v5.channel.k8s.io"]);
        assert_eq!(extract(&h), Err(ProtocolTokenError::Encoding));
    }

    #[test]
    fn ignored_cases() {
        assert_eq!(extract(&ws_headers(&[TOKEN_PREFIX, "v5.channel.k8s.io"])), Ok(None));
        assert_eq!(extract(&ws_headers(&["v5.channel.k8s.io"])), Ok(None));
        let mut not_ws = ws_headers(&[&encoded("tok"), "v5.channel.k8s.io"]);
        not_ws.remove(UPGRADE);
        assert_eq!(extract(&not_ws), Ok(None));
    }

    #[test]
    fn connection_header_variants() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        h.append(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!is_websocket_request(&h));
        h.append(CONNECTION, HeaderValue::from_static("foo, UPGRADE"));
        assert!(is_websocket_request(&h));
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(!is_websocket_request(&h));
    }
}
