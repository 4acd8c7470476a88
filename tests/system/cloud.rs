//! A whole Streamfleet for a test: nats-server, node, workers and host agents as real processes,
//! with short heartbeat intervals; and a watcher that folds the followed log.

use crate::harness::{NodeProcess, System};
use std::time::Duration;
use streamfleet_bus_client::Follower;
use streamfleet_bus_schemas::services::*;
use streamfleet_bus_schemas::{Command, CommandReply, Event, subjects};
use streamfleet_workers::Fleet;
use uuid::Uuid;

/// Heartbeat interval of every process in these tests.
pub const HEARTBEAT_MS: u64 = 250;
/// Spare host identities admitted for each launcher, for the fleet to ask for.
pub const SPARES: u32 = 4;
/// Longest any test waits for the system to reach a state (a failure guard, not a sync).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Clients in Paris, New York and Singapore (documentation ranges mapped in the default
/// locations): nearest regions eu-west, us-east and ap-south.
pub const PARIS: &str = "198.51.100.7";
pub const NEW_YORK: &str = "192.0.2.5";

pub struct Cloud {
    pub sys: System,
    /// The redemption front door, `https://127.0.0.1:<port>/redeem`.
    pub redeem_url: String,
    /// How the hosts' control ports are reached: HTTPS, verified against the test's authority.
    pub host_via: streamfleet_media::signal::Via,
    pub token_key: String,
    workers: NodeProcess,
    pub agents: Vec<NodeProcess>,
}

/// One agent: region, id prefix, hosts, capacity, launcher.
pub struct AgentSpec<'a> {
    pub region: &'a str,
    pub prefix: &'a str,
    pub hosts: u32,
    pub capacity: u32,
    pub launcher: bool,
    pub version: &'a str,
    /// More `host-agent` arguments (stream settings, address).
    pub extra: Vec<String>,
}

impl<'a> AgentSpec<'a> {
    pub fn new(region: &'a str, prefix: &'a str, hosts: u32, capacity: u32) -> Self {
        AgentSpec {
            region,
            prefix,
            hosts,
            capacity,
            launcher: false,
            version: "1.0.0",
            extra: Vec::new(),
        }
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn launcher(mut self) -> Self {
        self.launcher = true;
        self
    }
}

/// The test server's certificate authority, as a child's `SF_NATS_CA`.
pub fn nats_ca(sys: &System) -> String {
    sys.nats
        .ca()
        .map(|ca| ca.to_string_lossy().to_string())
        .unwrap_or_default()
}

impl Cloud {
    pub fn start(agents: &[AgentSpec]) -> Cloud {
        let sys = System::start();
        let token_key = streamfleet_workers::TokenKey::generate_hex();
        let worker_pw = sys.nats.password("worker");
        let hb = HEARTBEAT_MS.to_string();
        let ca = nats_ca(&sys);
        let tls = sys.nats.tls_files().expect("the test system speaks TLS");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"));
        command
            .args([
                "workers",
                "--nats-url",
                &sys.nats.url,
                "--heartbeat-interval-ms",
                &hb,
                "--lost-after-intervals",
                "12",
                "--launch-timeout-ms",
                "10000",
                "--front-door",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key)
            .env("SF_WORKER_PASSWORD", &worker_pw)
            .env("SF_TOKEN_KEY", &token_key)
            .env("SF_NATS_CA", &ca);
        let (workers, ready) = NodeProcess::spawn_command(command);
        let redeem_url = ready
            .strip_prefix("ready front-door=")
            .map(|url| format!("{url}/redeem"))
            .unwrap_or_else(|| panic!("the workers' front door: {ready}"));
        let host_via = streamfleet_media::signal::Via {
            tls: Some(streamfleet_tls::client_config(&tls.ca).expect("client config")),
            local: None,
        };
        let mut cloud = Cloud {
            sys,
            redeem_url,
            host_via,
            token_key,
            workers,
            agents: Vec::new(),
        };
        for spec in agents {
            cloud.add_agent(spec);
        }
        cloud
    }

    pub fn add_agent(&mut self, spec: &AgentSpec) -> usize {
        // Its hosts are admitted first, each with its own key, as an operator admits them; a
        // launcher gets spare identities the fleet may ask it to launch.
        let mut ids: Vec<String> = (1..=spec.hosts)
            .map(|n| format!("{}-{n}", spec.prefix))
            .collect();
        if spec.launcher {
            ids.extend((1..=SPARES).map(|n| format!("{}-spare{n}", spec.prefix)));
        }
        if !ids.is_empty() {
            let nats = &*self.sys.nats;
            let region = spec.region;
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let rt = tokio::runtime::Runtime::new().expect("runtime");
                        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                        rt.block_on(nats.admit_hosts(&ids, region))
                            .expect("hosts admitted");
                    })
                    .join()
                    .expect("admission thread");
            });
        }
        let launcher_pw = self.sys.nats.password("launcher");
        let keys = self.sys.nats.host_keys().to_string_lossy().to_string();
        // Its control ports speak HTTPS, with a certificate of the test's authority for the
        // address they listen on.
        let tls = self
            .sys
            .nats
            .tls_files()
            .expect("the test system speaks TLS");
        let address = spec
            .extra
            .iter()
            .position(|a| a == "--address")
            .and_then(|i| spec.extra.get(i + 1))
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        let (cert, key) = if address == "127.0.0.1" {
            (tls.cert.clone(), tls.key.clone())
        } else {
            tls.issue(&[&address], &format!("host-{address}"))
                .expect("a certificate for the agent's address")
        };
        let hb = HEARTBEAT_MS.to_string();
        let (hosts, capacity) = (spec.hosts.to_string(), spec.capacity.to_string());
        let mut args = vec![
            "host-agent",
            "--nats-url",
            &self.sys.nats.url,
            "--host-keys",
            &keys,
            "--region",
            spec.region,
            "--id-prefix",
            spec.prefix,
            "--hosts",
            &hosts,
            "--capacity",
            &capacity,
            "--version",
            spec.version,
            "--heartbeat-interval-ms",
            &hb,
        ];
        if !spec.launcher {
            args.push("--no-launcher");
        }
        args.extend(spec.extra.iter().map(String::as_str));
        self.agents.push(NodeProcess::spawn(
            &args,
            &[
                ("SF_LAUNCHER_PASSWORD", &launcher_pw),
                ("SF_NATS_CA", &nats_ca(&self.sys)),
                ("SF_TLS_CERT", &cert.to_string_lossy()),
                ("SF_TLS_KEY", &key.to_string_lossy()),
            ],
        ));
        self.agents.len() - 1
    }

    /// `kill -9` the workers: nothing sends commands any more.
    pub fn kill_workers(&mut self) {
        self.workers.kill9();
    }

    /// `streamfleet projections serve` on a free port into `dir`; returns it and its gRPC URL.
    pub fn projections(&self, dir: &std::path::Path) -> (NodeProcess, String) {
        let pw = self.sys.nats.password("dashboard");
        let hb = HEARTBEAT_MS.to_string();
        let dir = dir.to_string_lossy().to_string();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"));
        child
            .args([
                "projections",
                "serve",
                "--grpc",
                "127.0.0.1:0",
                "--nats-url",
                &self.sys.nats.url,
            ])
            .args(["--data-dir", &dir, "--heartbeat-interval-ms", &hb])
            .env("SF_DASHBOARD_PASSWORD", pw)
            .envs(self.sys.nats.ca_env());
        let (process, line) = NodeProcess::spawn_command(child);
        let addr = line
            .strip_prefix("ready grpc=")
            .expect("ready grpc=ADDR")
            .to_string();
        (process, format!("http://{addr}"))
    }

    /// Asks the token service for a token.
    pub async fn issue(
        &self,
        user: &str,
        client_ip: Option<&str>,
        group: Option<&str>,
        ttl: Option<u32>,
    ) -> TokenGrant {
        let client = self.sys.nats.client("entitlement").await;
        let req = TokenRequest {
            app_id: "chess".into(),
            user_id: user.into(),
            client_ip: client_ip.map(str::to_string),
            group_id: group.map(Into::into),
            ttl_seconds: ttl,
        };
        let msg = client
            .request(
                subjects::TOKEN_REQUEST,
                serde_json::to_vec(&req).expect("json").into(),
            )
            .await
            .expect("the token service answers");
        match serde_json::from_slice::<TokenReply>(&msg.payload).expect("token reply") {
            TokenReply::Issued(grant) => grant,
            TokenReply::Error(e) => panic!("token refused: {e:?}"),
        }
    }

    /// Redeems a token as a client.
    pub async fn redeem(&self, token: &str, client_ip: &str) -> RedemptionReply {
        self.redeem_measured(token, client_ip, &[]).await
    }

    /// Redeems a token as a client that measured its latency to some regions.
    pub async fn redeem_measured(
        &self,
        token: &str,
        client_ip: &str,
        latencies: &[(&str, u32)],
    ) -> RedemptionReply {
        // As a trusted internal caller naming the client's address (clients themselves go
        // through the front door, which sees theirs).
        let client = self.sys.nats.client("service").await;
        let latencies_ms = latencies
            .iter()
            .map(|(r, ms)| RegionLatency {
                region: (*r).into(),
                ms: *ms,
            })
            .collect();
        let req = Redemption {
            token: token.into(),
            client_ip: client_ip.into(),
            latencies_ms,
        };
        let msg = client
            .request(
                subjects::REDEEM,
                serde_json::to_vec(&req).expect("json").into(),
            )
            .await
            .expect("the redemption node answers");
        serde_json::from_slice(&msg.payload).expect("redemption reply")
    }

    /// Issues and redeems; the session must be provisioned.
    pub async fn session(&self, user: &str, ip: &str, group: Option<&str>) -> SessionGrant {
        let grant = self.issue(user, Some(ip), group, None).await;
        match self.redeem(grant.token.expose(), ip).await {
            RedemptionReply::Provisioned(s) => s,
            RedemptionReply::Error(e) => panic!("redemption refused: {e:?}"),
        }
    }

    /// Sends a command as a service (operators, schedulers).
    pub async fn command(&self, command: Command) -> CommandReply {
        self.sys
            .nats
            .commands("service")
            .await
            .send(Uuid::now_v7(), &command)
            .await
            .expect("reply")
    }

    /// Follows the log from the start, folding a [`Fleet`].
    pub async fn watch(&self) -> Watch {
        Watch {
            follower: Follower::start(self.sys.nats.client("auditor").await, 1)
                .await
                .expect("follow"),
            fleet: Fleet::default(),
            events: Vec::new(),
        }
    }
}

/// The log as followed: every event so far and the fleet folded from them.
pub struct Watch {
    follower: Follower,
    pub fleet: Fleet,
    pub events: Vec<(u64, Event)>,
}

impl Watch {
    /// Follows until `done` holds; panics after [`PATIENCE`] with `what`.
    pub async fn until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&[(u64, Event)], &Fleet) -> bool,
    ) {
        if done(&self.events, &self.fleet) {
            return;
        }
        let (events, fleet) = (&mut self.events, &mut self.fleet);
        let waited =
            streamfleet_testkit::wait_for(&mut self.follower, what, PATIENCE, |followed| {
                let env = followed.envelope().expect("envelope");
                let event =
                    Event::from_parts(&env.body.event_type, env.body.data).expect("known event");
                fleet.apply(followed.position, env.body.time, &event);
                events.push((followed.position, event));
                done(events, fleet)
            })
            .await;
        if let Err(error) = waited {
            panic!(
                "{error}\nlast events: {:#?}",
                &self.events[self.events.len().saturating_sub(15)..]
            );
        }
    }
}

impl Cloud {
    /// A request to a host's control port over HTTPS: (status, body).
    pub async fn http(
        &self,
        address: &str,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        streamfleet_host_agent::control::request(
            &self.host_via,
            address,
            port,
            method,
            path,
            headers,
        )
        .await
        .expect("the host's control port answers")
    }
}

pub fn bearer(credentials: &str) -> String {
    format!("Bearer {credentials}")
}

/// The code of a refused redemption ("provisioned" when it was not refused).
pub fn code(reply: &RedemptionReply) -> String {
    match reply {
        RedemptionReply::Provisioned(_) => "provisioned".into(),
        RedemptionReply::Error(e) => e.code.clone(),
    }
}
