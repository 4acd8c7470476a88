//! The demo's synthetic entitlement service and clients: sessions keep coming and going, from
//! client IPs in three places, now and then in a party, and each ends saving its progress.

use std::time::Duration;
use streamfleet_bus_client::{NatsLogin, ask};
use streamfleet_bus_schemas::services::*;
use streamfleet_bus_schemas::subjects;
use streamfleet_host_agent::control;

pub struct Demo {
    pub entitlement: NatsLogin,
    pub client: NatsLogin,
    pub app_id: String,
    /// How the hosts' control ports are reached (HTTPS with the installation's authority).
    pub hosts: streamfleet_media::signal::Via,
}

const PLACES: [&str; 3] = ["198.51.100", "192.0.2", "203.0.113"];

impl Demo {
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let (Ok(entitlement), Ok(client)) = (
            streamfleet_bus_client::connect(&self.entitlement).await,
            streamfleet_bus_client::connect(&self.client).await,
        ) else {
            tracing::warn!("demo clients could not connect; no demo load");
            return;
        };
        let mut ticks = tokio::time::interval(Duration::from_millis(400));
        let sessions = async {
            loop {
                ticks.tick().await;
                tokio::spawn(one_session(
                    entitlement.clone(),
                    client.clone(),
                    self.app_id.clone(),
                    self.hosts.clone(),
                ));
            }
        };
        tokio::select! {
            () = sessions => {}
            () = stop => {}
        }
    }
}

/// One user: a token, a redemption, a look at the session on its host, a while playing, an end.
async fn one_session(
    entitlement: async_nats::Client,
    client: async_nats::Client,
    app_id: String,
    hosts: streamfleet_media::signal::Via,
) {
    let user = rand::random_range(0..40u32);
    let ip = format!(
        "{}.{}",
        PLACES[rand::random_range(0..PLACES.len())],
        rand::random_range(1..255u8)
    );
    let group =
        (rand::random_range(0..5u8) == 0).then(|| format!("party-{}", rand::random_range(0..3u8)));
    let request = TokenRequest {
        app_id: app_id.into(),
        user_id: format!("user-{user}").into(),
        client_ip: Some(ip.clone()),
        group_id: group.map(Into::into),
        ttl_seconds: None,
    };
    let Ok(TokenReply::Issued(grant)) =
        ask(&entitlement, subjects::TOKEN_REQUEST, &request, None).await
    else {
        return;
    };
    let redemption = Redemption {
        token: grant.token,
        client_ip: ip,
        latencies_ms: Vec::new(),
    };
    match ask::<_, RedemptionReply>(&client, subjects::REDEEM, &redemption, None).await {
        Ok(RedemptionReply::Provisioned(s)) => {
            tokio::time::sleep(Duration::from_millis(rand::random_range(2_000..15_000))).await;
            let path = format!("/sessions/{}", s.session_id);
            let saved = format!("level={}", rand::random_range(1..20u8));
            let bearer = format!("Bearer {}", s.credentials.expose());
            let headers = [
                ("authorization", bearer.as_str()),
                ("sf-saved-state", saved.as_str()),
            ];
            let _ = control::request(
                &hosts,
                &s.address,
                s.control_port,
                "DELETE",
                &path,
                &headers,
            )
            .await;
        }
        Ok(RedemptionReply::Error(e)) => {
            tracing::info!(code = %e.code, message = %e.message, "demo redemption refused")
        }
        Err(error) => tracing::warn!(%error, "demo redemption not answered"),
    }
}
