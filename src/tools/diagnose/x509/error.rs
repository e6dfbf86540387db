//! Go's verification errors with their exact `Error()` strings (golang/go
//! src/crypto/x509/verify.go: `CertificateInvalidError`, `HostnameError`,
//! `UnknownAuthorityError`; src/crypto/x509/x509.go: `UnhandledCriticalExtension`,
//! `InsecureAlgorithmError`, `ConstraintViolationError`), plus the subject of the certificate
//! an error is about, for the report's words.

use std::fmt;

/// Go's `time.RFC3339` of a Unix time, in UTC.
pub fn rfc3339(unix: i64) -> String {
    let format = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// `CertificateInvalidError.Reason`, the ones `Verify` can return for a server chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    NotAuthorizedToSign,
    Expired,
    TooManyIntermediates,
    IncompatibleUsage,
    NameMismatch,
}

/// Which side of the validity window `now` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Before { not_before: i64 },
    After { not_after: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X509Error {
    UnhandledCriticalExtension {
        subject: String,
    },
    Invalid {
        reason: InvalidReason,
        /// For `Expired`: the clock and the bound it fails.
        window: Option<(i64, Window)>,
        subject: String,
    },
    /// `HostnameError`, its message already worked out (it depends on the whole certificate).
    Hostname {
        message: String,
    },
    UnknownAuthority {
        /// The subject of the certificate whose issuer was not found.
        subject: String,
        hint: Option<Hint>,
    },
    /// `errSignatureLimit`.
    SignatureLimit,
}

/// Why a certificate with the right name was not taken as the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub error: String,
    /// `authority_name()` of the candidate.
    pub authority: String,
}

impl X509Error {
    pub fn expired(now: i64, window: Window, subject: &str) -> X509Error {
        X509Error::Invalid {
            reason: InvalidReason::Expired,
            window: Some((now, window)),
            subject: subject.to_owned(),
        }
    }

    pub fn invalid(reason: InvalidReason, subject: &str) -> X509Error {
        X509Error::Invalid {
            reason,
            window: None,
            subject: subject.to_owned(),
        }
    }

    /// The certificate the error is about.
    pub fn subject(&self) -> Option<&str> {
        match self {
            X509Error::UnhandledCriticalExtension { subject }
            | X509Error::Invalid { subject, .. }
            | X509Error::UnknownAuthority { subject, .. } => Some(subject),
            X509Error::Hostname { .. } | X509Error::SignatureLimit => None,
        }
    }
}

impl fmt::Display for X509Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            X509Error::UnhandledCriticalExtension { .. } => f.write_str("x509: unhandled critical extension"),
            X509Error::Invalid { reason, window, .. } => match reason {
                InvalidReason::NotAuthorizedToSign => {
                    f.write_str("x509: certificate is not authorized to sign other certificates")
                }
                InvalidReason::TooManyIntermediates => {
                    f.write_str("x509: too many intermediates for path length constraint")
                }
                InvalidReason::IncompatibleUsage => {
                    f.write_str("x509: certificate specifies an incompatible key usage")
                }
                InvalidReason::NameMismatch => {
                    f.write_str("x509: issuer name does not match subject from issuing certificate")
                }
                InvalidReason::Expired => {
                    f.write_str("x509: certificate has expired or is not yet valid: ")?;
                    // isValid: the detail, with both times as time.RFC3339 prints them.
                    match window {
                        Some((now, Window::Before { not_before })) => {
                            write!(f, "current time {} is before {}", rfc3339(*now), rfc3339(*not_before))
                        }
                        Some((now, Window::After { not_after })) => {
                            write!(f, "current time {} is after {}", rfc3339(*now), rfc3339(*not_after))
                        }
                        None => Ok(()),
                    }
                }
            },
            X509Error::Hostname { message } => f.write_str(message),
            X509Error::UnknownAuthority { hint, .. } => {
                f.write_str("x509: certificate signed by unknown authority")?;
                if let Some(h) = hint {
                    write!(
                        f,
                        " (possibly because of {} while trying to verify candidate authority certificate {})",
                        go_quote(&h.error),
                        go_quote(&h.authority)
                    )?;
                }
                Ok(())
            }
            X509Error::SignatureLimit => {
                f.write_str("x509: signature check attempts limit reached while verifying certificate chain")
            }
        }
    }
}

impl std::error::Error for X509Error {}

/// `%q`: strconv.Quote. Printable characters stay, `"` and `\` are escaped, control characters
/// become `\a`…`\v`, `\xNN`, `\uNNNN` or `\UNNNNNNNN`. "Printable" is approximated by Rust's
/// `char::is_control` and whitespace (Go's `unicode.IsPrint` also excludes format characters).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if c.is_control() || c.is_whitespace() => {
                let n = u32::from(c);
                if n < 0x80 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_as_strconv_quote_does() {
        assert_eq!(go_quote("kubernetes"), "\"kubernetes\"");
        assert_eq!(go_quote("a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
        assert_eq!(go_quote("x\ny\u{1}\u{7f}"), "\"x\\ny\\x01\\x7f\"");
        assert_eq!(go_quote("Grüße"), "\"Grüße\"");
        assert_eq!(go_quote("\u{a0}"), "\"\\u00a0\"");
    }

    #[test]
    fn messages_are_go_s() {
        let e = X509Error::expired(
            1_700_090_000,
            Window::After {
                not_after: 1_700_086_400,
            },
            "CN=a",
        );
        assert_eq!(
            e.to_string(),
            "x509: certificate has expired or is not yet valid: current time 2023-11-15T23:13:20Z is after 2023-11-15T22:13:20Z"
        );
        let e = X509Error::expired(
            1_699_999_999,
            Window::Before {
                not_before: 1_700_000_000,
            },
            "CN=a",
        );
        assert_eq!(
            e.to_string(),
            "x509: certificate has expired or is not yet valid: current time 2023-11-14T22:13:19Z is before 2023-11-14T22:13:20Z"
        );
        let e = X509Error::UnknownAuthority {
            subject: "CN=a".into(),
            hint: Some(Hint {
                error: "x509: ECDSA verification failure".into(),
                authority: "kubernetes".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"kubernetes\")"
        );
        assert_eq!(
            X509Error::invalid(InvalidReason::IncompatibleUsage, "CN=a").to_string(),
            "x509: certificate specifies an incompatible key usage"
        );
    }
}
