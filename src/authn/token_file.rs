//! Static bearer tokens from a CSV file in kube-apiserver's `--token-auth-file` format:
//! `token,user,uid[,"group1,group2"]`. Tokens are held only as SHA-256 digests, so lookups
//! take the same time whatever prefix of a token a caller guesses right.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};

use crate::reload::{ReloadStats, Source};

use super::user::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("token file '{path}': {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("token file '{path}': record {record}: {message}")]
    Csv {
        path: PathBuf,
        record: usize,
        message: String,
    },
    #[error("token file '{path}' must have at least 3 columns (token, user name, user uid), found {found}")]
    Columns { path: PathBuf, found: usize },
}

/// The loaded tokens, and what was odd about the file (duplicates, empty tokens) for the log.
pub struct TokenFile {
    by_digest: HashMap<[u8; 32], Arc<UserInfo>>,
    pub warnings: Vec<String>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let text = std::fs::read(path).map_err(|source| TokenFileError::Io {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses as kube-apiserver's `tokenfile.NewCSV` does: variable field counts, at least three
    /// columns, empty tokens skipped, the last of duplicate tokens wins.
    pub fn parse(path: &Path, text: &[u8]) -> Result<TokenFile, TokenFileError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text);
        let mut by_digest = HashMap::new();
        let mut warnings = Vec::new();
        for (index, record) in reader.records().enumerate() {
            let record_number = index + 1;
            let record = record.map_err(|e| TokenFileError::Csv {
                path: path.into(),
                record: record_number,
                message: e.to_string(),
            })?;
            if record.len() < 3 {
                return Err(TokenFileError::Columns {
                    path: path.into(),
                    found: record.len(),
                });
            }
            let token = &record[0];
            if token.is_empty() {
                warnings.push(format!(
                    "empty token has been found in token file '{}', record number '{record_number}'",
                    path.display()
                ));
                continue;
            }
            let groups = record
                .get(3)
                .map(|g| g.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default();
            let user = UserInfo {
                name: record[1].to_owned(),
                uid: record[2].to_owned(),
                groups,
                ..UserInfo::default()
            };
            if by_digest
                .insert(token_digest(token), Arc::new(user.with_authenticated_group()))
                .is_some()
            {
                warnings.push(format!(
                    "duplicate token has been found in token file '{}', record number '{record_number}'",
                    path.display()
                ));
            }
        }
        Ok(TokenFile { by_digest, warnings })
    }

    /// The identity for a token, with `system:authenticated` already added.
    pub fn lookup(&self, token: &str) -> Option<Arc<UserInfo>> {
        self.by_digest.get(&token_digest(token)).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// `authentication.tokenFile`, reloaded when it changes: the next request sees the new tokens
/// (a removed token is refused at once: file tokens are never cached). A file that does not
/// parse leaves the previous tokens in place.
pub struct TokenFileSource {
    pub path: PathBuf,
    pub current: Arc<ArcSwap<TokenFile>>,
    pub stats: Arc<ReloadStats>,
}

impl Source for TokenFileSource {
    fn what(&self) -> &'static str {
        "token file"
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn apply(&self, contents: &[Vec<u8>]) -> Result<(), String> {
        let text = contents.first().map_or(&[][..], Vec::as_slice);
        let file = TokenFile::parse(&self.path, text).map_err(|e| e.to_string())?;
        for w in &file.warnings {
            tracing::warn!("{w}");
        }
        self.current.store(Arc::new(file));
        Ok(())
    }

    fn stats(&self) -> Option<&ReloadStats> {
        Some(&self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TokenFile, TokenFileError> {
        TokenFile::parse(Path::new("tokens.csv"), text.as_bytes())
    }

    #[test]
    fn reads_users_uids_and_quoted_groups() {
        let f = parse("t1,alice,uid-a,\"g1,g2\"\nt2,bob,uid-b\nt3,carol,uid-c,solo,ignored\n").expect("valid");
        let alice = f.lookup("t1").expect("alice");
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "uid-a"));
        assert_eq!(alice.groups, ["g1", "g2", "system:authenticated"]);
        assert_eq!(f.lookup("t2").expect("bob").groups, ["system:authenticated"]);
        assert_eq!(f.lookup("t3").expect("carol").groups, ["solo", "system:authenticated"]);
        assert!(f.lookup("t4").is_none());
        assert!(f.lookup("t").is_none());
        assert!(f.lookup("t1 ").is_none());
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn too_few_columns_is_an_error() {
        let err = parse("t1,alice\n").err().expect("error");
        assert_eq!(
            err.to_string(),
            "token file 'tokens.csv' must have at least 3 columns (token, user name, user uid), found 2"
        );
    }

    #[test]
    fn empty_and_duplicate_tokens_are_warned_about() {
        let f = parse(",nobody,0\nt1,first,1\nt1,second,2\n").expect("valid");
        assert_eq!(f.lookup("t1").expect("t1").name, "second");
        assert_eq!(f.warnings.len(), 2);
        assert!(f.warnings[0].contains("empty token"));
        assert!(f.warnings[1].contains("duplicate token") && f.warnings[1].contains("'3'"));
    }

    #[test]
    fn tokens_differing_in_the_last_byte_are_distinct() {
        let a = "a".repeat(1024);
        let mut b = a.clone();
        b.pop();
        b.push('b');
        let f = parse(&format!("{a},ua,1\n{b},ub,2\n")).expect("valid");
        assert_eq!(f.lookup(&a).expect("a").name, "ua");
        assert_eq!(f.lookup(&b).expect("b").name, "ub");
    }
}
