//! Parsing of the `Authorization: Bearer` header, exactly as the API server's bearertoken
//! authenticator reads it (kubernetes/apiserver pkg/authentication/request/bearertoken/
//! bearertoken.go), plus the gateway's own limits.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Tokens longer than this are refused with 431 before any lookup: no legitimate service
/// account or OIDC token comes close, and an unbounded token would be an amplification lever.
pub const MAX_TOKEN_BYTES: usize = 12 * 1024;

/// What the `Authorization` header of a request offers.
#[derive(Debug, PartialEq, Eq)]
pub enum BearerHeader<'a> {
    /// No header, an empty one, another scheme, or an empty token: no credential at all.
    Absent,
    /// The token to look up.
    Token(&'a str),
    /// A header that cannot carry a valid token (non-ASCII): a failed credential, never looked up.
    Invalid,
    /// More than one `Authorization` header: the request is ambiguous.
    Duplicate,
    /// A token over [`MAX_TOKEN_BYTES`].
    TooLarge,
}

/// Reads the bearer token the way `bearertoken.go` does: trim, split on the first two spaces,
/// case-insensitive `bearer`, the second field is the token and anything after it is ignored.
pub fn parse(headers: &HeaderMap) -> BearerHeader<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return BearerHeader::Absent;
    };
    if values.next().is_some() {
        return BearerHeader::Duplicate;
    }
    let Ok(value) = value.to_str() else {
        return BearerHeader::Invalid;
    };
    parse_value(value)
}

/// The pure part of [`parse`], on one header value.
pub fn parse_value(value: &str) -> BearerHeader<'_> {
    // Go's strings.TrimSpace; the value is ASCII here, so ASCII whitespace is the whole set.
    let auth = value.trim_matches(|c: char| c.is_ascii_whitespace());
    if auth.is_empty() {
        return BearerHeader::Absent;
    }
    let mut parts = auth.splitn(3, ' ');
    let (Some(scheme), Some(token)) = (parts.next(), parts.next()) else {
        return BearerHeader::Absent;
    };
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return BearerHeader::Absent;
    }
    if token.len() > MAX_TOKEN_BYTES {
        return BearerHeader::TooLarge;
    }
    BearerHeader::Token(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn kubelet_cases() {
        assert_eq!(parse_value(""), BearerHeader::Absent);
        assert_eq!(parse_value("   "), BearerHeader::Absent);
        assert_eq!(parse_value("Bearer"), BearerHeader::Absent);
        assert_eq!(parse_value("Bearer "), BearerHeader::Absent);
        assert_eq!(parse_value("bear token"), BearerHeader::Absent);
        assert_eq!(parse_value("Bearer: token"), BearerHeader::Absent);
        assert_eq!(parse_value("Basic dXNlcjpwYXNz"), BearerHeader::Absent);
        // Two spaces: parts are ["Bearer", "", "token"], so the token is empty and ignored.
        assert_eq!(parse_value("Bearer  token"), BearerHeader::Absent);
        assert_eq!(parse_value("Bearer token"), BearerHeader::Token("token"));
        assert_eq!(parse_value("bearer token"), BearerHeader::Token("token"));
        assert_eq!(parse_value("BEARER token"), BearerHeader::Token("token"));
        assert_eq!(parse_value("  Bearer token  "), BearerHeader::Token("token"));
        assert_eq!(parse_value("Bearer token a b c"), BearerHeader::Token("token"));
    }

    #[test]
    fn limits() {
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(parse_value(&big), BearerHeader::TooLarge);
        let ok = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(parse_value(&ok), BearerHeader::Token(_)));
    }

    #[test]
    fn header_map_cases() {
        let mut h = HeaderMap::new();
        assert_eq!(parse(&h), BearerHeader::Absent);
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert_eq!(parse(&h), BearerHeader::Token("a"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(parse(&h), BearerHeader::Duplicate);
        let mut h = HeaderMap::new();
        let non_ascii = HeaderValue::from_bytes(b"Bearer t\xc3\xa9").expect("obs-text is a valid header value");
        h.insert(AUTHORIZATION, non_ascii);
        assert_eq!(parse(&h), BearerHeader::Invalid);
    }
}
