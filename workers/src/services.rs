//! The request/reply services: tokens, redemption, and each region's host-management service.
//!
//! Invariant: every request gets exactly one reply, either the answer or a [`ServiceError`]
//! whose code a client can show; a request that cannot be read is answered `malformed`, and
//! the service keeps serving.

use crate::token::{self, TokenError};
use crate::{Refused, Shared, WorkersError};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::{AppId, GroupId, HostId, RegionId, SessionId, UserId};
use streamfleet_bus_schemas::instance::{LaunchInstance, StartInstance};
use streamfleet_bus_schemas::payloads::{
    AssignSession, IssueToken, ProvisionSession, RedeemToken, ReleaseSession, RequestHost,
};
use streamfleet_bus_schemas::services::*;
use streamfleet_bus_schemas::{Command, Event, subjects};
use streamfleet_domain::placement::{self, Placement};
use tokio::task::JoinHandle;

/// Most requests one service handles at once.
const IN_FLIGHT: usize = 512;
/// How long an agent has to confirm a session start.
const START_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a region's host-management service has to answer a redemption.
const REGION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a redemption waits for a requested host to register.
const HOST_WAIT: Duration = Duration::from_secs(15);
/// Placement attempts per redemption (each refused host is skipped on the next).
const ATTEMPTS: usize = 12;

/// Subscribes every service; returns their tasks.
pub(crate) async fn start(shared: Arc<Shared>) -> Result<Vec<JoinHandle<()>>, WorkersError> {
    let mut tasks = Vec::new();
    let sub = |e: async_nats::SubscribeError| WorkersError::Nats(e.to_string());
    let tokens = shared
        .client
        .queue_subscribe(subjects::TOKEN_REQUEST, "token-service".into())
        .await
        .map_err(sub)?;
    tasks.push(serve(shared.clone(), tokens, issue_token));
    let redeem = shared
        .client
        .queue_subscribe(subjects::REDEEM, "redemption".into())
        .await
        .map_err(sub)?;
    tasks.push(serve(shared.clone(), redeem, redeem_at_node));
    for region in shared.config.regions.clone() {
        let hms = shared
            .client
            .queue_subscribe(
                subjects::region_redeem(&region.name),
                format!("hms-{}", region.name),
            )
            .await
            .map_err(sub)?;
        tasks.push(serve(shared.clone(), hms, redeem_in_region));
    }
    let _ = shared.client.flush().await;
    Ok(tasks)
}

/// Serves one subscription: each request in its own task, at most [`IN_FLIGHT`] at once.
fn serve<Req, Rep, F, Fut>(
    shared: Arc<Shared>,
    mut sub: async_nats::Subscriber,
    handle: F,
) -> JoinHandle<()>
where
    Req: serde::de::DeserializeOwned + Send + 'static,
    Rep: serde::Serialize + From<ServiceError> + Send + 'static,
    F: Fn(Arc<Shared>, Req) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Rep> + Send + 'static,
{
    tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        while let Some(msg) = sub.next().await {
            let Some(reply_to) = streamfleet_bus_client::reply_inbox(&msg) else {
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let reply: Rep = match serde_json::from_slice::<Req>(&msg.payload) {
                    Ok(req) => handle(shared.clone(), req).await,
                    Err(e) => {
                        ServiceError::new("malformed", format!("unreadable request: {e}")).into()
                    }
                };
                let body = serde_json::to_vec(&reply).unwrap_or_default();
                if let Err(error) = shared.client.publish(reply_to, body.into()).await {
                    tracing::warn!(%error, "could not send a reply");
                }
                drop(permit);
            });
        }
    })
}

/// The token service: mint, record the hash, hand out the token.
async fn issue_token(shared: Arc<Shared>, req: TokenRequest) -> TokenReply {
    let (token_id, token) = shared.config.token_key.mint();
    let command = Command::IssueToken(IssueToken {
        token_id: token_id.clone().into(),
        app_id: req.app_id,
        user_id: req.user_id,
        client_ip: req.client_ip,
        group_id: req.group_id,
        ttl_seconds: req
            .ttl_seconds
            .unwrap_or(streamfleet_domain::token::DEFAULT_TTL_SECONDS),
        token_hash: token::hash(&token),
    });
    // The accepted reply carries the recorded TokenIssued: its expiry, with no read-back.
    let expires_at = match shared.send(command).await {
        Ok(recorded) => recorded.iter().find_map(|r| match r.event() {
            Some(Event::TokenIssued(t)) => Some(t.expires_at),
            _ => None,
        }),
        Err(Refused::Rejected { rule, message }) => {
            // An app nobody registered is its own answer: the entitlement service asked for
            // something the fleet does not run.
            let code = if rule == "unknown_app" {
                "unknown_app"
            } else {
                "invalid"
            };
            return TokenReply::Error(ServiceError::new(code, format!("{rule}: {message}")));
        }
        Err(Refused::Undelivered(e)) => {
            return TokenReply::Error(ServiceError::new("unavailable", e));
        }
    };
    match expires_at {
        Some(expires_at) => TokenReply::Issued(TokenGrant {
            token: token.into(),
            token_id: token_id.into(),
            expires_at,
        }),
        None => TokenReply::Error(ServiceError::new(
            "unavailable",
            "token recorded but its expiry was not in the reply; ask again",
        )),
    }
}

/// The redemption node: check the signature, rank regions, hand over to the nearest region
/// that answers.
pub(crate) async fn redeem_at_node(shared: Arc<Shared>, req: Redemption) -> RedemptionReply {
    let token_id = match shared.config.token_key.verify(req.token.expose()) {
        Ok(id) => id,
        Err(TokenError::Malformed) => {
            return ServiceError::new("malformed", TokenError::Malformed.to_string()).into();
        }
        Err(TokenError::Forged) => {
            return ServiceError::new("forged", TokenError::Forged.to_string()).into();
        }
    };
    let Ok(ip) = req.client_ip.parse::<IpAddr>() else {
        return ServiceError::new(
            "invalid",
            format!("client_ip `{}` is not an IP address", req.client_ip),
        )
        .into();
    };
    let latencies: Vec<(RegionId, u32)> = req
        .latencies_ms
        .iter()
        .map(|l| (l.region.clone(), l.ms))
        .collect();
    let mut ranked: Vec<RankedRegion> = placement::rank_regions(
        ip,
        &latencies,
        &shared.config.regions,
        &shared.config.locations,
    )
    .into_iter()
    .map(|r| RankedRegion {
        region: r.region,
        reason: r.reason,
    })
    .collect();
    let mut unavailable = Vec::new();
    while !ranked.is_empty() {
        let region = ranked[0].region.clone();
        let mut handed = RegionRedemption {
            token_id: token_id.clone().into(),
            token_hash: req.token.hash(),
            client_ip: req.client_ip.clone(),
            regions: ranked.clone(),
        };
        if !unavailable.is_empty() {
            handed.regions[0].reason = format!(
                "{} ({} unavailable)",
                handed.regions[0].reason,
                unavailable.join(", ")
            );
        }
        let body = serde_json::to_vec(&handed).unwrap_or_default();
        match shared
            .ask::<RedemptionReply>(subjects::region_redeem(&region), body, REGION_TIMEOUT)
            .await
        {
            Ok(reply) => return reply,
            Err(error) => {
                tracing::warn!(%region, %error, "region did not take a redemption; trying the next nearest");
                unavailable.push(region);
                ranked.remove(0);
            }
        }
    }
    ServiceError::new(
        "unavailable",
        "no region's host-management service answered",
    )
    .into()
}

/// A region's host-management service: redeem, place, start on the host, provision.
async fn redeem_in_region(shared: Arc<Shared>, req: RegionRedemption) -> RedemptionReply {
    let Some(route) = req.regions.first().cloned() else {
        return ServiceError::new("invalid", "no region to place in").into();
    };
    let session_id = SessionId::from(uuid::Uuid::now_v7().simple().to_string());
    let redeemed = match redeem(&shared, &req, &route, &session_id).await {
        Ok(r) => r,
        Err(refusal) => return refusal.into(),
    };
    let ranked: Vec<placement::RankedRegion> = req
        .regions
        .iter()
        .map(|r| placement::RankedRegion {
            region: r.region.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    let mut exclude = BTreeSet::new();
    for _ in 0..ATTEMPTS {
        let (choice, version, saved) = choose(&shared, &redeemed, &ranked, &exclude);
        let (host_id, region, placement_reason) = match choice {
            Some(Placement::Host {
                host_id,
                region,
                reason,
            }) => (host_id, region, reason),
            Some(Placement::NeedHost { region, reason }) => {
                let waiting = shared.changed.notified();
                request_host(
                    &shared,
                    &region,
                    &redeemed.app_id,
                    version.as_deref(),
                    &reason,
                )
                .await;
                let _ = tokio::time::timeout(HOST_WAIT, waiting).await;
                continue;
            }
            None => return ServiceError::new("no_capacity", "no region is configured").into(),
        };
        let _placing = Placing::new(&shared, &host_id);
        let Some(credentials) =
            assign_and_start(&shared, &host_id, &session_id, &redeemed, &saved).await
        else {
            exclude.insert(host_id);
            continue;
        };
        let (address, control_port, control_tls) = {
            let fleet = shared.fleet();
            let endpoint = fleet
                .hosts
                .get(&host_id)
                .map(|h| (h.address.clone(), h.control_port, h.control_tls));
            endpoint.unwrap_or_default()
        };
        let provision = Command::ProvisionSession(ProvisionSession {
            session_id: session_id.clone(),
            token_id: req.token_id.clone(),
            app_id: redeemed.app_id.clone(),
            user_id: redeemed.user_id.clone(),
            group_id: redeemed.group_id.clone(),
            region: region.clone(),
            host_id: host_id.clone(),
            address: address.clone(),
            control_port,
            credential_hash: token::hash(&credentials),
            placement_reason: placement_reason.clone(),
            restored_from: saved.as_ref().map(|(session, _)| session.clone()),
        });
        if let Err(refused) = shared.send(provision).await {
            return ServiceError::new("unavailable", format!("provisioning failed: {refused}"))
                .into();
        }
        tracing::info!(session = %session_id, host = %host_id, %region, "session provisioned");
        return RedemptionReply::Provisioned(SessionGrant {
            session_id,
            region,
            host_id,
            address,
            control_port,
            control_tls,
            credentials: credentials.into(),
            route_reason: route.reason,
            placement_reason,
            restored_from: saved.map(|(session, _)| session),
        });
    }
    ServiceError::new(
        "no_capacity",
        format!("no host could take the session after {ATTEMPTS} attempts"),
    )
    .into()
}

/// What the client is told of a refused `RedeemToken`: the rule's code, and the node's message
/// except where it would help a thief — the IP a token is bound to is not named (whoever holds
/// a stolen token would learn which address to claim).
fn refusal(rule: &str, message: String) -> ServiceError {
    let code = redemption_code(rule);
    match code {
        "ip_mismatch" => ServiceError::new(code, "this token is bound to another client address"),
        _ => ServiceError::new(code, message),
    }
}

/// The client-facing code of a refused `RedeemToken`'s rule.
fn redemption_code(rule: &str) -> &'static str {
    match rule {
        "token_unknown" => "unknown",
        "token_forged" => "forged",
        "token_already_used" => "already_used",
        "token_expired" => "expired",
        "client_ip_mismatch" => "ip_mismatch",
        _ => "invalid",
    }
}

/// Records the redemption (the token's one use) and says whom the token is for: from the
/// fleet when it has followed the issue already, else from the accepted reply's event.
async fn redeem(
    shared: &Shared,
    req: &RegionRedemption,
    route: &streamfleet_bus_schemas::services::RankedRegion,
    session_id: &SessionId,
) -> Result<Redeemed, ServiceError> {
    let known = shared.fleet().tokens.get(&req.token_id).cloned();
    let redeem = Command::RedeemToken(RedeemToken {
        token_id: req.token_id.clone(),
        token_hash: req.token_hash.clone(),
        client_ip: req.client_ip.clone(),
        session_id: session_id.clone(),
        region: route.region.clone(),
        route_reason: route.reason.clone(),
    });
    let recorded = match shared.send(redeem).await {
        Ok(recorded) => recorded,
        Err(Refused::Rejected { rule, message }) => {
            return Err(refusal(&rule, message));
        }
        Err(Refused::Undelivered(e)) => return Err(ServiceError::new("unavailable", e)),
    };
    if let Some(t) = known {
        return Ok(Redeemed {
            app_id: t.app_id,
            user_id: t.user_id,
            group_id: t.group_id,
        });
    }
    recorded
        .iter()
        .find_map(|r| match r.event() {
            Some(Event::TokenRedeemed(r)) if r.session_id == *session_id => Some(Redeemed {
                app_id: r.app_id,
                user_id: r.user_id,
                group_id: r.group_id,
            }),
            _ => None,
        })
        .ok_or_else(|| ServiceError::new("unavailable", "redemption recorded but not in the reply"))
}

/// Where to place the session now: the pure placement over the fleet, counting the slots this
/// process is placing as taken; with the app's current version and the user's saved state.
fn choose(
    shared: &Shared,
    redeemed: &Redeemed,
    ranked: &[placement::RankedRegion],
    exclude: &BTreeSet<HostId>,
) -> (
    Option<Placement>,
    Option<String>,
    Option<(SessionId, String)>,
) {
    let fleet = shared.fleet();
    let version = fleet.current_version(&redeemed.app_id).map(str::to_string);
    let mut views = fleet.slot_views();
    {
        let placing = shared.placing.lock().unwrap_or_else(|e| e.into_inner());
        for v in &mut views {
            v.sessions += placing.get(&v.host_id).copied().unwrap_or(0);
        }
    }
    let choice = placement::place(
        &redeemed.app_id,
        version.as_deref(),
        redeemed.group_id.as_deref(),
        ranked,
        &views,
        exclude,
    );
    let saved = fleet
        .saved_states
        .get(&(redeemed.user_id.clone(), redeemed.app_id.clone()))
        .cloned();
    (choice, version, saved)
}

/// Takes a slot on the host (`AssignSession`, the commit point of placement) and has its agent
/// start the session; the session's new credentials, or none when the host refused or did not
/// start it (its slot then released), so the caller places again elsewhere.
async fn assign_and_start(
    shared: &Shared,
    host_id: &str,
    session_id: &SessionId,
    redeemed: &Redeemed,
    saved: &Option<(SessionId, String)>,
) -> Option<String> {
    let assign = Command::AssignSession(AssignSession {
        host_id: host_id.into(),
        session_id: session_id.clone(),
        app_id: redeemed.app_id.clone(),
    });
    if let Err(refused) = shared.send(assign).await {
        tracing::debug!(host = %host_id, %refused, "host refused the session; placing again");
        return None;
    }
    let credentials = token::new_secret();
    let start = StartSession {
        session_id: session_id.clone(),
        app_id: redeemed.app_id.clone(),
        user_id: redeemed.user_id.clone(),
        credentials: credentials.clone().into(),
        saved_state: saved.as_ref().map(|(_, state)| state.clone()),
    };
    let body = serde_json::to_vec(&start).unwrap_or_default();
    match shared
        .ask::<AgentReply>(subjects::host(host_id, "start"), body, START_TIMEOUT)
        .await
    {
        Ok(AgentReply::Ok { .. }) => Some(credentials),
        other => {
            tracing::warn!(host = %host_id, answer = ?other, "host did not start the session; placing again");
            let release = Command::ReleaseSession(ReleaseSession {
                host_id: host_id.into(),
                session_id: session_id.clone(),
            });
            let _ = shared
                .send_once(&format!("release/{session_id}/{host_id}"), release)
                .await;
            None
        }
    }
}

/// Who a redeemed token is for.
struct Redeemed {
    app_id: AppId,
    user_id: UserId,
    group_id: Option<GroupId>,
}

/// A slot being placed on a host, counted in [`Shared::placing`] until dropped.
struct Placing<'a> {
    shared: &'a Shared,
    host_id: HostId,
}

impl<'a> Placing<'a> {
    fn new(shared: &'a Shared, host_id: &str) -> Self {
        *shared
            .placing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host_id.into())
            .or_default() += 1;
        Placing {
            shared,
            host_id: host_id.into(),
        }
    }
}

impl Drop for Placing<'_> {
    fn drop(&mut self) {
        let mut placing = self
            .shared
            .placing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = placing.get_mut(&self.host_id) {
            *n -= 1;
            if *n == 0 {
                placing.remove(&self.host_id);
            }
        }
    }
}

/// Records a host request and asks the region's launchers for it.
pub(crate) async fn request_host(
    shared: &Shared,
    region: &str,
    app_id: &str,
    version: Option<&str>,
    reason: &str,
) {
    let version = version
        .map(str::to_string)
        .or_else(|| {
            let fleet = shared.fleet();
            fleet
                .hosts
                .values()
                .filter(|h| h.app_id == app_id)
                .map(|h| h.version.clone())
                .max_by_key(|v| streamfleet_domain::app::parse_version(v).unwrap_or_default())
        })
        .unwrap_or_else(|| "1.0.0".into());
    // Only an admitted identity can be launched: the operator admits hosts ahead (their keys
    // go to the region's launchers), the fleet asks for one of them. Two requests racing for
    // the same identity: the log records one, the other is refused as `host_already_exists`.
    let Some(host_id) = shared.fleet().spare_identity(region).cloned() else {
        tracing::warn!(
            %region,
            %reason,
            "no admitted host identity left to launch in the region; admit more (`streamfleet host admit`)"
        );
        return;
    };
    let request = Command::RequestHost(RequestHost {
        host_id: host_id.clone(),
        region: region.into(),
        app_id: app_id.into(),
        version: version.clone(),
        reason: reason.to_string(),
    });
    match shared.send(request).await {
        Ok(_) => {
            tracing::info!(host = %host_id, %region, %reason, "host requested");
            launch(shared, region, &host_id, app_id, &version).await;
        }
        Err(refused) => tracing::warn!(%region, %refused, "could not request a host"),
    }
}

/// Launches a requested host as an instance, through the instance command set like any other
/// (seed 002): a `sim` instance of the catalogue's `synthetic-app` in the region, its id the
/// host's; the region's host agent, a compute host of hypervisor `sim`, runs it with the app and
/// version the host's `HostRequested` records. Asked again (the keepers retry a launch that did
/// not register in time), a failed or stopped one is started again.
pub(crate) async fn launch(
    shared: &Shared,
    region: &str,
    host_id: &str,
    app_id: &str,
    version: &str,
) {
    let launch = Command::LaunchInstance(LaunchInstance {
        instance_id: host_id.into(),
        image: streamfleet_domain::image::STREAMING_HOST.into(),
        hypervisor: Some(Hypervisor::Sim),
        features: vec![],
        region: Some(region.into()),
        client_ip: None,
        cpus: 1,
        memory_mib: 16,
        disk_mib: 1,
    });
    match shared.send(launch).await {
        Ok(_) => {
            tracing::info!(%region, host = %host_id, %app_id, %version, "host launched as an instance")
        }
        Err(Refused::Rejected { rule, .. }) if rule == "instance_already_exists" => {
            let start = Command::StartInstance(StartInstance {
                instance_id: host_id.into(),
            });
            match shared.send(start).await {
                Ok(_) => tracing::info!(host = %host_id, "host's instance started again"),
                Err(refused) => {
                    tracing::debug!(host = %host_id, %refused, "host's instance under way already")
                }
            }
        }
        Err(refused) => {
            tracing::warn!(%region, host = %host_id, %refused, "no compute host took the host's launch yet")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{redemption_code, refusal};

    #[test]
    fn an_ip_mismatch_does_not_name_the_bound_address() {
        let told = refusal(
            "client_ip_mismatch",
            "token is bound to client IP 198.51.100.7, not 203.0.113.9".into(),
        );
        assert_eq!(told.code, "ip_mismatch");
        assert!(!told.message.contains("198.51.100.7"), "{}", told.message);
        let other = refusal("token_expired", "token `t1` expired at …".into());
        assert!(
            other.message.contains("t1"),
            "other refusals keep the node's words"
        );
    }

    #[test]
    fn each_refused_redemption_rule_has_the_code_the_client_is_told() {
        for (rule, code) in [
            ("token_unknown", "unknown"),
            ("token_forged", "forged"),
            ("token_already_used", "already_used"),
            ("token_expired", "expired"),
            ("client_ip_mismatch", "ip_mismatch"),
            ("invalid_payload", "invalid"),
        ] {
            assert_eq!(redemption_code(rule), code, "{rule}");
        }
    }
}
