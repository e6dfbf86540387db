//! `authorization.rbac.policyFiles`, reloaded when any of them changes: the files are read
//! together and validated as at start; a set that does not load (a half-written file, a rule
//! the API server would refuse) leaves the previous policy in force. Decisions already cached
//! by nobody: RBAC mode has no cache, so the next request is judged by the new policy.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::RbacPolicy;
use crate::reload::{ReloadStats, Source};

pub struct PolicyFiles {
    pub paths: Vec<PathBuf>,
    pub current: Arc<ArcSwap<RbacPolicy>>,
    pub stats: Arc<ReloadStats>,
}

impl Source for PolicyFiles {
    fn what(&self) -> &'static str {
        "RBAC policy"
    }

    fn files(&self) -> Vec<PathBuf> {
        self.paths.clone()
    }

    fn apply(&self, contents: &[Vec<u8>]) -> Result<(), String> {
        let sources: Vec<(String, String)> = self
            .paths
            .iter()
            .zip(contents)
            .map(|(path, bytes)| (path.display().to_string(), String::from_utf8_lossy(bytes).into_owned()))
            .collect();
        let policy = RbacPolicy::from_sources(&sources).map_err(|e| e.to_string())?;
        for w in policy.warnings() {
            tracing::warn!("{w}");
        }
        self.current.store(Arc::new(policy));
        Ok(())
    }

    fn stats(&self) -> Option<&ReloadStats> {
        Some(&self.stats)
    }
}
