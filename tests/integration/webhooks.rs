//! The webhook backends against a stand-in API server over HTTPS (kubernetes/apiserver
//! plugin/pkg/authenticator/token/webhook and plugin/pkg/authorizer/webhook, with their
//! tests TestV1WebhookCacheAndRetry and TestV1WebhookCache as the model): review bodies, caches under a manual clock,
//! coalescing, retries, the deadline, outages, and stale mode across an outage.

mod budget;
mod caching;
mod failures;
mod reviews;
mod stale;

use std::time::Duration;

use kubelet_gate::app::BuildOptions;
use kubelet_gate::clock::Clock;
use kubelet_gate::k8s::Backoff;

use crate::common::apiserver::{ApiServerStandIn, ReviewUser};
use crate::common::{Harness, Setup};

/// Fast retries so that retry counts are quick to observe; the kubelet's own backoff is
/// pinned by a unit test in `k8s.rs`.
const FAST: Backoff = Backoff {
    initial: Duration::from_millis(5),
    factor: 1.5,
    jitter: 0.2,
    steps: 5,
};

struct Rig {
    api: ApiServerStandIn,
    h: Harness,
    clock: Clock,
}

fn user(name: &str) -> ReviewUser {
    ReviewUser {
        username: name.into(),
        uid: format!("uid-{name}"),
        groups: vec!["team".into()],
        extra: Default::default(),
    }
}

/// A gateway with both webhooks on, talking to a fresh stand-in API server. `tweak` adjusts
/// the setup (an `apiServer:` block, audiences, RBAC mode, ...).
async fn rig_with(tweak: impl FnOnce(&mut Setup)) -> Rig {
    let api = ApiServerStandIn::start().await;
    let clock = Clock::manual();
    let mut setup = Setup {
        token_webhook: true,
        mode: "Webhook",
        options: BuildOptions {
            clock: clock.clone(),
            backoff: FAST,
            ..BuildOptions::default()
        },
        ..Setup::default()
    };
    tweak(&mut setup);
    let h = Harness::start_with_api(setup, &api).await;
    Rig { api, h, clock }
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

impl Rig {
    async fn get(&self, token: &str, path: &str) -> crate::common::client::Reply {
        let auth = format!("Bearer {token}");
        self.h
            .client()
            .get(self.h.addr, path, &[("authorization", &auth)])
            .await
    }
}
