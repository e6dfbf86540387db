//! What a test certificate should be: validity offsets from now, extended key usages, and the
//! client, server and intermediate specifications the CA issues from.

use super::*;

/// A point in time relative to "now" (when the certificate is generated), in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset(pub i64);

impl Offset {
    pub const NOW: Offset = Offset(0);
    pub const fn secs(s: i64) -> Offset {
        Offset(s)
    }
    pub const fn hours(h: i64) -> Offset {
        Offset(h * 3600)
    }
    pub const fn days(d: i64) -> Offset {
        Offset(d * 86_400)
    }
    /// The absolute time this offset designates, from the current clock.
    pub fn at(self) -> SystemTime {
        let now = SystemTime::now();
        if self.0 >= 0 {
            now + Duration::from_secs(self.0.unsigned_abs())
        } else {
            now - Duration::from_secs(self.0.unsigned_abs())
        }
    }
}

/// Extended key usage of a client leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eku {
    ClientAuth,
    ServerAuthOnly,
    /// No EKU extension at all.
    None,
    ClientAndServer,
}

/// Everything that can be varied in a client certificate.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// "" = no CN attribute at all.
    pub cn: String,
    /// One `O` attribute (own RDN) per entry, in order.
    pub orgs: Vec<String>,
    pub eku: Eku,
    pub not_before: Offset,
    pub not_after: Offset,
    /// basicConstraints CA:TRUE (otherwise an explicit CA:FALSE).
    pub is_ca: bool,
    /// keyUsage keyCertSign (digitalSignature is always present).
    pub key_cert_sign: bool,
    /// One `UID` (0.9.2342.19200300.100.1.1) attribute per entry.
    pub uids: Vec<String>,
    /// Adds a critical extension with an unknown OID ([`OID_UNKNOWN_EXT`]).
    pub unknown_critical_ext: bool,
}

impl ClientSpec {
    /// CN as given, no orgs, EKU clientAuth, valid now-1h .. now+1d.
    pub fn new(cn: &str) -> Self {
        ClientSpec {
            cn: cn.to_string(),
            orgs: Vec::new(),
            eku: Eku::ClientAuth,
            not_before: Offset::hours(-1),
            not_after: Offset::days(1),
            is_ca: false,
            key_cert_sign: false,
            uids: Vec::new(),
            unknown_critical_ext: false,
        }
    }
    pub fn cn(mut self, cn: &str) -> Self {
        self.cn = cn.to_string();
        self
    }
    pub fn orgs(mut self, o: &[&str]) -> Self {
        self.orgs = o.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn eku(mut self, e: Eku) -> Self {
        self.eku = e;
        self
    }
    pub fn not_before(mut self, at: Offset) -> Self {
        self.not_before = at;
        self
    }
    pub fn not_after(mut self, at: Offset) -> Self {
        self.not_after = at;
        self
    }
    pub fn validity(self, not_before: Offset, not_after: Offset) -> Self {
        self.not_before(not_before).not_after(not_after)
    }
    /// Valid now-2d .. now-1d.
    pub fn expired(self) -> Self {
        self.validity(Offset::days(-2), Offset::days(-1))
    }
    /// Valid now+1d .. now+2d.
    pub fn not_yet_valid(self) -> Self {
        self.validity(Offset::days(1), Offset::days(2))
    }
    pub fn ca(mut self, v: bool) -> Self {
        self.is_ca = v;
        self
    }
    pub fn key_cert_sign(mut self, v: bool) -> Self {
        self.key_cert_sign = v;
        self
    }
    pub fn uids(mut self, u: &[&str]) -> Self {
        self.uids = u.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn unknown_critical_ext(mut self, v: bool) -> Self {
        self.unknown_critical_ext = v;
        self
    }
}

/// Everything that can be varied in a serving certificate (for `diagnose`'s broken setups).
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub cn: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// `ServerAuthOnly` is the healthy case; `ClientAuth` a client certificate served by mistake.
    pub eku: Eku,
    pub not_before: Offset,
    pub not_after: Offset,
}

impl ServerSpec {
    /// CN as given, no SANs, EKU serverAuth, valid now-1h .. now+30d.
    pub fn new(cn: &str) -> Self {
        ServerSpec {
            cn: cn.to_string(),
            dns: Vec::new(),
            ips: Vec::new(),
            eku: Eku::ServerAuthOnly,
            not_before: Offset::hours(-1),
            not_after: Offset::days(30),
        }
    }
    pub fn dns(mut self, names: &[&str]) -> Self {
        self.dns = names.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn ips(mut self, ips: &[IpAddr]) -> Self {
        self.ips = ips.to_vec();
        self
    }
    pub fn eku(mut self, e: Eku) -> Self {
        self.eku = e;
        self
    }
    pub fn validity(mut self, not_before: Offset, not_after: Offset) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

/// Options for [`Ca::intermediate`]. `Default` (= [`IntermediateOpts::new`]) is a valid CA:TRUE
/// intermediate without path length or name constraints.
#[derive(Clone, Debug)]
pub struct IntermediateOpts {
    /// Valid now-30d .. now-1d.
    pub expired: bool,
    /// false = basicConstraints CA:FALSE (key usage still says keyCertSign).
    pub is_ca: bool,
    pub path_len: Option<u8>,
    /// Name constraint: permitted subtree directoryName `O=<value>`.
    pub permitted_org: Option<String>,
}

impl Default for IntermediateOpts {
    fn default() -> Self {
        IntermediateOpts {
            expired: false,
            is_ca: true,
            path_len: None,
            permitted_org: None,
        }
    }
}

impl IntermediateOpts {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }
    pub fn not_ca(mut self) -> Self {
        self.is_ca = false;
        self
    }
    pub fn path_len(mut self, n: u8) -> Self {
        self.path_len = Some(n);
        self
    }
    pub fn permitted_org(mut self, o: &str) -> Self {
        self.permitted_org = Some(o.to_string());
        self
    }
}
