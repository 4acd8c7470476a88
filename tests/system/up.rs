//! `streamfleet up`: one command brings nats-server and the node up; SIGTERM takes them down.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use streamfleet_bus_client::{CommandClient, NatsLogin, connect};
use streamfleet_bus_schemas::CommandReply;
use uuid::Uuid;

#[tokio::test]
async fn up_serves_commands_with_generated_credentials_and_stops_cleanly_on_sigterm() {
    crate::instances::images();
    let fabric = format!("sfup{}", std::process::id());
    let state = tempfile::tempdir().expect("tempdir");
    let port = crate::harness::free_port();
    let mut up = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .arg("up")
        // Relative, as an operator types it (nats.conf needs the store path absolute: up's job).
        .current_dir(state.path())
        .arg("--state-dir")
        .arg(".streamfleet")
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--grpc",
            "127.0.0.1:0",
            "--front-door",
            "127.0.0.1:0",
            "--heartbeat-interval-ms",
            "300",
            "--summary-every",
            "1",
        ])
        // One compute host of each kind, on a fabric of the test's own.
        .args([
            "--qemu-hosts",
            "1",
            "--crun-hosts",
            "1",
            "--fabric",
            &fabric,
        ])
        .arg("--images")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/images"))
        // The defaults a new user gets: INFO to the log file, the terminal kept quiet.
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn streamfleet up");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    // The terminal's other half, read all along so `up` never blocks on it.
    let stderr = up.stderr.take().expect("stderr");
    let terminal_errors = std::thread::spawn(move || {
        let mut all = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut all).ok();
        all
    });
    let mut banner = Vec::new();
    loop {
        let Some(line) = lines.next() else {
            let err = terminal_errors.join().unwrap_or_default();
            panic!("up exited before its banner: {err}");
        };
        let line = line.expect("utf-8");
        let done = line.starts_with("Ctrl-C stops");
        banner.push(line);
        if done {
            break;
        }
    }
    assert!(
        banner
            .iter()
            .any(|l| l.contains(&format!("nats://127.0.0.1:{port}"))),
        "{banner:?}"
    );
    // Live summaries follow the banner; keep reading them so `up` never blocks on its pipe.
    let (summaries_tx, summaries) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = summaries_tx.send(line);
        }
    });

    // The demo's clients get sessions, and the views show them over gRPC.
    let grpc = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("views:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the banner names the gRPC address")
        .to_string();
    let mut views =
        streamfleet_projections::pb::views_client::ViewsClient::connect(format!("http://{grpc}"))
            .await
            .expect("gRPC");
    let mut updates = views
        .watch_sessions(streamfleet_projections::pb::SessionsRequest::default())
        .await
        .expect("watch sessions")
        .into_inner();
    let provisioned = async {
        while let Some(update) = futures::StreamExt::next(&mut updates).await {
            let update = update.expect("update");
            if update.sessions.iter().any(|s| !s.host_id.is_empty()) {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(crate::cloud::PATIENCE, provisioned)
            .await
            .unwrap_or(false),
        "no demo session provisioned"
    );
    drop(updates);
    let hosts = views
        .get_hosts(streamfleet_projections::pb::HostsRequest::default())
        .await
        .expect("hosts")
        .into_inner();
    let regions: std::collections::BTreeSet<&str> =
        hosts.hosts.iter().map(|h| h.region.as_str()).collect();
    assert_eq!(
        regions.len(),
        3,
        "host agents for three regions: {regions:?}"
    );
    let summary = summaries
        .recv_timeout(crate::cloud::PATIENCE)
        .expect("a live summary line");
    assert!(summary.contains("sessions"), "{summary}");
    drop(views);

    // The generated credentials work for the roles they name, and only they are in the file.
    let creds = std::fs::read_to_string(state.path().join(".streamfleet/credentials.env"))
        .expect("credentials.env");
    let service_pw = creds
        .lines()
        .find_map(|l| l.strip_prefix("SF_SERVICE_PASSWORD="))
        .expect("a service password");
    // NATS speaks TLS only, with a certificate of the installation's own authority: plaintext
    // is refused even with the right password, and the authority's certificate is the one
    // `credentials.env` names for clients.
    let ca = state.path().join(".streamfleet/tls/ca.pem");
    assert!(
        creds.contains("SF_REDEEM_URL=https://127.0.0.1:"),
        "clients find the HTTPS front door: {creds}"
    );
    assert!(
        creds.contains(&format!(
            "SF_NATS_CA={}",
            ca.canonicalize().expect("ca").display()
        )),
        "{creds}"
    );
    let service = NatsLogin::new(format!("nats://127.0.0.1:{port}"), "service", service_pw);
    assert!(
        connect(&service).await.is_err(),
        "a plaintext connection is refused"
    );
    let client = connect(&service.clone().with_ca(Some(ca.clone())))
        .await
        .expect("login over TLS");
    let reply = CommandClient::new(
        client.clone(),
        streamfleet_bus_schemas::principal::Role::Service,
        "test",
    )
    .send(Uuid::now_v7(), &crate::commands::token("up-1"))
    .await
    .expect("reply");
    assert!(matches!(reply, CommandReply::Accepted { .. }), "{reply:?}");
    // An operator admits one more host to the running system: its key lets it in (the server
    // reloaded, not restarted), it registers as itself, and the log says who admitted it.
    let operator_pw = creds
        .lines()
        .find_map(|l| l.strip_prefix("SF_OPERATOR_PASSWORD="))
        .expect("an operator password");
    let admitted = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .current_dir(state.path())
        .args(["host", "admit", "--region", "eu-west", "eu-west-20"])
        .args(["--nats-url", &format!("nats://127.0.0.1:{port}")])
        .env("SF_OPERATOR_PASSWORD", operator_pw)
        .env("SF_NATS_CA", &ca)
        .output()
        .expect("streamfleet host admit");
    let said = String::from_utf8_lossy(&admitted.stdout);
    assert!(
        admitted.status.success() && said.starts_with("admitted eu-west-20 region=eu-west key=U"),
        "{said}{}",
        String::from_utf8_lossy(&admitted.stderr)
    );
    let key = streamfleet_bus_client::HostKey::read(
        &state.path().join(".streamfleet/host-keys"),
        &"eu-west-20".into(),
    )
    .expect("its key");
    let host = connect(
        &NatsLogin::host(
            format!("nats://127.0.0.1:{port}"),
            &"eu-west-20".into(),
            key.seed().clone(),
        )
        .with_ca(Some(ca.clone())),
    )
    .await
    .expect("the admitted host is let in");
    let registered = CommandClient::new(
        host,
        streamfleet_bus_schemas::principal::Principal::host("eu-west-20"),
        "test",
    )
    .send(Uuid::now_v7(), &crate::commands::register("eu-west-20"))
    .await
    .expect("reply");
    assert!(
        matches!(registered, CommandReply::Accepted { .. }),
        "{registered:?}"
    );
    let history = streamfleet_bus_client::LogReader::new(client.clone())
        .stream("host-eu-west-20")
        .await
        .expect("read");
    let types: Vec<String> = history
        .iter()
        .map(|e| {
            format!(
                "{} by {}",
                e.body.event_type,
                e.body.actor.as_deref().unwrap_or("")
            )
        })
        .collect();
    // An admitted host is also a spare the running fleet may ask a launcher for (the demo keeps
    // a buffer), so more may follow; what holds is who said what.
    assert_eq!(types[0], "HostAdmitted by operator", "{types:?}");
    assert!(
        types.contains(&"HostRegistered by host.eu-west-20".to_string()),
        "{types:?}"
    );
    for t in &types {
        if t.starts_with("HostRegistered") || t.starts_with("HeartbeatReceived") {
            assert!(
                t.ends_with("by host.eu-west-20"),
                "only the host speaks for itself: {types:?}"
            );
        }
    }
    assert!(
        connect(
            &NatsLogin::new(format!("nats://127.0.0.1:{port}"), "service", "wrong")
                .with_ca(Some(ca.clone()))
        )
        .await
        .is_err()
    );

    // Secrets at rest and in other processes: the state folder is its owner's alone, the
    // credentials file too; nats-server gets the passwords nats.conf reads and not the token
    // signing key; no child has a password on its command line.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(state.path().join(p))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".streamfleet"), 0o700);
    assert_eq!(mode(".streamfleet/credentials.env"), 0o600);
    // Each host has its own key, its seed its owner's alone; the configuration holds public
    // keys only.
    assert_eq!(mode(".streamfleet/host-keys"), 0o700);
    assert_eq!(mode(".streamfleet/host-keys/eu-west-1.nk"), 0o600);
    let seed = std::fs::read_to_string(state.path().join(".streamfleet/host-keys/eu-west-1.nk"))
        .expect("seed");
    let conf = std::fs::read_to_string(state.path().join(".streamfleet/nats.conf")).expect("conf");
    assert!(
        seed.starts_with("SU") && !conf.contains(seed.trim()),
        "no seed in nats.conf"
    );
    assert!(
        conf.contains("sf.host.eu-west-1.>") && !conf.contains("user: host,"),
        "{conf}"
    );
    let children = children_of(up.id());
    let nats_server = children
        .iter()
        .find(|(_, cmdline)| cmdline.starts_with("nats-server"))
        .expect("up's nats-server");
    let environ = std::fs::read(format!("/proc/{}/environ", nats_server.0)).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("SF_NODE_PASSWORD="),
        "nats-server gets the passwords"
    );
    assert!(
        !environ.contains("SF_TOKEN_KEY="),
        "the token signing key is in nats-server's environment"
    );
    for (_, cmdline) in &children {
        for line in creds.lines().filter_map(|l| l.split_once('=')) {
            assert!(
                !cmdline.contains(line.1),
                "a secret on a command line: {cmdline}"
            );
        }
    }

    // A service user launches a container on up's crun host and reaches it on its address.
    let launched = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .args(["instance", "launch", "i-up", "--hypervisor", "crun"])
        .args(["--nats-url", &format!("nats://127.0.0.1:{port}")])
        .env("SF_SERVICE_PASSWORD", service_pw)
        .env("SF_NATS_CA", &ca)
        .output()
        .expect("streamfleet instance launch");
    let said = String::from_utf8_lossy(&launched.stdout);
    assert!(
        launched.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let running = said
        .lines()
        .find_map(|l| l.strip_prefix("InstanceLaunched on eu-west-crun-1 (crun), answering at "))
        .unwrap_or_else(|| panic!("launched on up's crun host: {said}"));
    let address = running.split_whitespace().next().expect("an address");
    let pid: u32 = running
        .rsplit_once("pid ")
        .and_then(|(_, p)| p.parse().ok())
        .expect("its pid");
    let answer = Command::new("ip")
        .args([
            "netns", "exec", &fabric, "busybox", "nc", "-w", "5", address, "7000",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("busybox nc");
    assert!(
        String::from_utf8_lossy(&answer.stdout).starts_with("id=i-up boots=1 "),
        "{answer:?}"
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(up.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = up.wait().expect("wait");
    assert!(exit.success(), "up exits cleanly on SIGTERM: {exit:?}");
    // Nothing it started outlives it: not the container, not the compute hosts' namespaces.
    assert!(ended(pid), "the container ended with up");
    let namespaces = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    for ns in [
        fabric.clone(),
        streamfleet_compute::network::host_namespace(&"eu-west-crun-1".into()),
        streamfleet_compute::network::host_namespace(&"eu-west-qemu-1".into()),
        streamfleet_compute::network::instance_namespace(&"i-up".into()),
    ] {
        assert!(
            !namespaces
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
            "{ns} is left: {namespaces}"
        );
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nats-server stopped with it"
    );
    assert!(
        state.path().join(".streamfleet/data/events.redb").exists(),
        "the log lives in the state folder"
    );
    // A quiet terminal: no INFO lines there; they are all in the state folder's log file,
    // the host agents' among them.
    let terminal = terminal_errors.join().expect("stderr reader");
    assert!(
        !terminal.lines().any(|l| l.contains(" INFO ")),
        "INFO lines on the terminal:\n{terminal}"
    );
    let log = std::fs::read_to_string(state.path().join(".streamfleet/streamfleet.log"))
        .expect("the log file");
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("streamfleet_workers")),
        "the workers' INFO lines are in the log file"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("streamfleet_host_agent")),
        "the host agents' INFO lines are in the log file"
    );
}

/// Whether process `pid` has ended: gone, or a zombie its new parent (the container's init
/// was reparented when crun detached it) has not reaped yet.
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// The processes whose parent is `pid`, with their command lines (arguments joined by spaces).
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The parent is the second field after the parenthesised command name.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((child, cmdline.trim().to_string()));
        }
    }
    found
}

/// `streamfleet up --no-demo` on `state` and `port`, once its banner is out; its output is
/// drained in the background.
pub fn start_up(state: &std::path::Path, port: u16) -> std::process::Child {
    let mut up = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .arg("up")
        .arg("--state-dir")
        .arg(state)
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--grpc",
            "127.0.0.1:0",
            "--front-door",
            "127.0.0.1:0",
            "--no-demo",
            "--qemu-hosts",
            "0",
            "--crun-hosts",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn streamfleet up");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("Ctrl-C stops") => break,
            Some(Ok(_)) => {}
            _ => panic!("up exited before its banner: {:?}", up.wait()),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    up
}

/// The operator's bad day: `up` killed -9. Before, nats-server and the host agents ran on as
/// orphans and the next `up` failed with "address already in use". Now its children die with
/// it; a second `up` on the same state folder is refused while the first lives, and starts
/// cleanly once it is gone.
#[test]
fn kill_9_of_up_leaves_no_orphans_and_one_up_owns_a_state_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = crate::harness::free_port();
    let mut first = start_up(&state, port);
    let second = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .arg("up")
        .arg("--state-dir")
        .arg(&state)
        .args(["--port", &crate::harness::free_port().to_string()])
        .args(["--qemu-hosts", "0", "--crun-hosts", "0"])
        .output()
        .expect("run a second up");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && said.contains("another `streamfleet up`"),
        "{said}"
    );
    let children: Vec<u32> = std::fs::read_to_string(state.join("up.children"))
        .expect("up records its children")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(
        children.len(),
        4,
        "nats-server and three agents: {children:?}"
    );

    first.kill().expect("kill -9 up");
    first.wait().expect("reaped");
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while children.iter().any(alive) {
        assert!(
            std::time::Instant::now() < deadline,
            "orphans: {:?}",
            children.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The same state folder and port again: it starts (no address in use) and stops cleanly.
    let mut again = start_up(&state, port);
    let _ = Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status();
    assert!(again.wait().expect("stopped").success());
}

/// The environment `credentials.env` gives a shell that sources it.
pub fn credentials_env(state: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(state.join("credentials.env"))
        .expect("credentials.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `streamfleet client` for `user`, as the README tells a user to run it against `up`.
fn client(state: &std::path::Path, port: u16, user: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_streamfleet"));
    command
        .args(["client", "--user", user, "--client-ip", "127.0.0.1"])
        .args(["--nats-url", &format!("nats://127.0.0.1:{port}")])
        .args(extra)
        .envs(credentials_env(state));
    command
}

/// Waits (within `patience`) until `ready` holds, checking every 50 ms.
fn until(what: &str, patience: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + patience;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The operator's bad day, part two: nats-server dies under `up` (before, the whole system
/// stopped with it), then a host agent does. Now `up` starts each again with a backoff and
/// says so; the node, workers and projections reconnect by themselves; a session being watched
/// keeps streaming throughout (media does not pass through NATS); new sessions start again.
#[test]
fn nats_server_and_a_host_agent_killed_under_up_are_restarted_and_a_watched_session_keeps_streaming()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = crate::harness::free_port();
    let mut up = start_up(&state, port);
    let log = state.join("streamfleet.log");
    let log_says = |text: &str| {
        std::fs::read_to_string(&log)
            .map(|l| l.contains(text))
            .unwrap_or(false)
    };

    // A session being watched, its frames counted as they are decoded.
    let mut watched = client(&state, port, "ada", &["--seconds", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("streamfleet client");
    let (frames_tx, frames) = std::sync::mpsc::channel();
    let stderr = watched.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = frames_tx.send(line);
        }
    });
    let next_frame_line = || loop {
        let line = frames
            .recv_timeout(crate::cloud::PATIENCE)
            .expect("the watched session keeps decoding frames");
        if line.starts_with("frame ") {
            return line;
        }
    };
    next_frame_line();

    // nats-server killed by its pid.
    let pid_file = state.join("nats.pid");
    let old_nats = std::fs::read_to_string(&pid_file).expect("nats.pid");
    assert!(
        Command::new("kill")
            .args(["-9", old_nats.trim()])
            .status()
            .expect("kill")
            .success()
    );
    until("nats-server restarted", crate::cloud::PATIENCE, || {
        log_says("nats-server restarted")
            && std::fs::read_to_string(&pid_file).is_ok_and(|p| p != old_nats)
    });
    assert!(log_says("nats-server died"), "its death is logged");
    assert!(
        up.try_wait().expect("up").is_none(),
        "up lives on after nats-server died"
    );
    // The watched session never stopped: frames keep coming after the restart.
    for _ in 0..3 {
        next_frame_line();
    }
    // Everything reconnected: a whole new session (token service, front door, node, a host
    // agent's host) from one command.
    let fresh = client(&state, port, "bob", &["--frames", "30", "--seconds", "60"])
        .output()
        .expect("a second client");
    assert!(
        fresh.status.success(),
        "a new session after nats-server restarted: {}",
        String::from_utf8_lossy(&fresh.stderr)
    );

    let _ = watched.kill();
    let _ = watched.wait();

    // A host agent killed: started again.
    let agents: Vec<(u32, String)> = children_of(up.id())
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains("host-agent") && cmdline.contains("us-east"))
        .collect();
    let [(agent, _)] = agents.as_slice() else {
        panic!("one us-east agent: {agents:?}")
    };
    assert!(
        Command::new("kill")
            .args(["-9", &agent.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    until("the host agent restarted", crate::cloud::PATIENCE, || {
        log_says("host agent us-east restarted")
    });
    assert!(log_says("host agent us-east died"));
    assert!(
        children_of(up.id())
            .iter()
            .any(|(pid, cmdline)| pid != agent && cmdline.contains("us-east")),
        "a new us-east agent runs"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status();
    assert!(
        up.wait().expect("stopped").success(),
        "only SIGTERM stops up, cleanly"
    );
}
