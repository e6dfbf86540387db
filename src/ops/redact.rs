//! Credentials in a query string never reach a log or an audit record. No kubelet endpoint
//! takes one there, but clients put tokens in URLs (`?access_token=...`, presigned `sig=`), and
//! a request target is logged as it came. Every parameter whose name looks like a credential
//! keeps its name and loses its value.

use std::borrow::Cow;

/// What a redacted value is written as.
pub const REDACTED: &str = "REDACTED";

/// `target` (a path with an optional query) with the values of credential-looking query
/// parameters replaced by [`REDACTED`]; borrowed when there is nothing to hide.
pub fn target(target: &str) -> Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return Cow::Borrowed(target);
    };
    if !query.split('&').any(|pair| is_credential(name_of(pair))) {
        return Cow::Borrowed(target);
    }
    let query: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            let name = name_of(pair);
            match is_credential(name) {
                true => Cow::Owned(format!("{name}={REDACTED}")),
                false => Cow::Borrowed(pair),
            }
        })
        .collect();
    Cow::Owned(format!("{path}?{}", query.join("&")))
}

fn name_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

/// Names a credential would go by, compared after percent-decoding and ASCII lower-casing.
fn is_credential(raw_name: &str) -> bool {
    let decoded = percent_decode(raw_name).to_ascii_lowercase();
    let name = decoded.trim();
    name.contains("token")
        || name.contains("secret")
        || name.contains("password")
        || matches!(
            name,
            "authorization"
                | "auth"
                | "bearer"
                | "passwd"
                | "pwd"
                | "api_key"
                | "apikey"
                | "api-key"
                | "key"
                | "sig"
                | "signature"
        )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_go_and_everything_else_stays_byte_for_byte() {
        assert_eq!(target("/pods"), "/pods");
        assert!(matches!(
            target("/stats/summary?only_cpu_and_memory=true"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            target("/metrics?access_token=eyJhbGciOi.x.y&x=1"),
            "/metrics?access_token=REDACTED&x=1"
        );
        assert_eq!(
            target("/exec/ns/p/c?command=ls&Token=abc&command=-l"),
            "/exec/ns/p/c?command=ls&Token=REDACTED&command=-l"
        );
        assert_eq!(target("/pods?access%5Ftoken=abc"), "/pods?access%5Ftoken=REDACTED");
        assert_eq!(
            target("/pods?sig=abc&api_key=k&password"),
            "/pods?sig=REDACTED&api_key=REDACTED&password=REDACTED"
        );
        assert_eq!(
            target("/containerLogs/ns/p/c?tailLines=5"),
            "/containerLogs/ns/p/c?tailLines=5"
        );
    }
}
