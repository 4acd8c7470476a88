//! Starting real nats-server and node processes for a test, each on its own port and folder.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use streamfleet_bus_client::{CommandClient, NatsLogin, ROLES, connect};

/// A nats-server started from the repository's nats.conf.
pub struct Nats {
    child: Child,
    pub url: String,
    passwords: HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

/// A port that is free now, below the kernel's ephemeral range (32768+), so the client sockets
/// of tests running in parallel cannot take it before the server binds it.
pub fn free_port() -> u16 {
    loop {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Nats {
    pub fn start() -> Nats {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwords: HashMap<_, _> = ROLES
            .iter()
            .map(|r| (*r, format!("{r}-{:032x}", rand::random::<u128>())))
            .collect();
        // Another test may still take the port between the check and the bind: try another.
        let mut attempts = 0;
        let (child, port, lines) = loop {
            attempts += 1;
            let port = free_port();
            let mut cmd = Command::new("nats-server");
            cmd.arg("-c")
                .arg(repo_root().join("nats.conf"))
                .arg("-p")
                .arg(port.to_string());
            cmd.env("SF_JETSTREAM_DIR", dir.path().join("js"));
            for (role, pw) in &passwords {
                cmd.env(format!("SF_{}_PASSWORD", role.to_uppercase()), pw);
            }
            let mut child = cmd
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("nats-server is installed (./test.sh installs it)");
            let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
            let mut said = Vec::new();
            let ready = loop {
                match lines.next() {
                    Some(Ok(line)) if line.contains("Server is ready") => break true,
                    Some(Ok(line)) => said.push(line),
                    _ => break false,
                }
            };
            if ready {
                break (child, port, lines);
            }
            let _ = child.wait();
            assert!(
                attempts < 5,
                "nats-server exited before it was ready: {}",
                said.join("\n")
            );
        };
        std::thread::spawn(move || for _ in lines {});
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            passwords,
            _dir: dir,
        }
    }

    /// A role's password.
    pub fn password(&self, role: &str) -> String {
        self.passwords[role].clone()
    }

    pub fn login(&self, role: &str) -> NatsLogin {
        NatsLogin::new(self.url.clone(), role, self.passwords[role].clone())
    }

    pub async fn client(&self, role: &str) -> async_nats::Client {
        connect(&self.login(role)).await.expect("connect")
    }

    pub async fn commands(&self, role: &str) -> CommandClient {
        CommandClient::new(self.client(role).await, format!("test/{role}"))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `streamfleet node` (or other `streamfleet` subcommand) child process.
pub struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    /// Starts `streamfleet <args>` with `env` and waits for its line starting with `ready`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_streamfleet"));
        command.args(args).envs(env.iter().copied());
        Self::spawn_command(command).0
    }

    /// Starts a prepared `streamfleet` command; returns it and its `ready…` line.
    pub fn spawn_command(mut command: Command) -> (NodeProcess, String) {
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("SF_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn streamfleet");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = match lines.next() {
            Some(Ok(line)) if line.starts_with("ready") => line,
            other => panic!("{command:?} did not become ready: {other:?}"),
        };
        std::thread::spawn(move || for _ in lines {});
        (NodeProcess { child }, ready)
    }
}

impl NodeProcess {
    /// Starts the node and waits for its `ready` line.
    pub fn start(nats: &Nats, data_dir: &Path) -> NodeProcess {
        Self::start_with(nats, data_dir, &[])
    }

    /// Starts the node with extra arguments.
    pub fn start_with(nats: &Nats, data_dir: &Path, args: &[&str]) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
            .arg("node")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--nats-url")
            .arg(&nats.url)
            .env("SF_NODE_PASSWORD", &nats.passwords["node"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn streamfleet node");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        match lines.next() {
            Some(Ok(line)) if line.starts_with("ready") => {}
            other => panic!("node did not become ready: {other:?}"),
        }
        std::thread::spawn(move || for _ in lines {});
        NodeProcess { child }
    }

    /// `kill -TERM`, and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM");
        self.child.wait().expect("wait")
    }

    /// `kill -9`, and waits until it is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A nats-server and a node on a fresh data folder.
pub struct System {
    pub nats: Nats,
    pub _node: NodeProcess,
    pub _data: tempfile::TempDir,
}

impl System {
    pub fn start() -> System {
        let nats = Nats::start();
        let data = tempfile::tempdir().expect("tempdir");
        let node = NodeProcess::start(&nats, data.path());
        System {
            nats,
            _node: node,
            _data: data,
        }
    }
}
