//! Starting real nats-server and node processes for a test, each on its own port and folder.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub use streamfleet_testkit::free_port;

/// A nats-server with the rendered configuration (the test kit's), speaking TLS only, as
/// `streamfleet up` runs it: every process of a test verifies it against the test's own
/// certificate authority (`SF_NATS_CA`).
pub struct Nats(streamfleet_testkit::NatsServer);

impl std::ops::Deref for Nats {
    type Target = streamfleet_testkit::NatsServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Nats {
    pub fn start() -> Nats {
        Nats(streamfleet_testkit::NatsServer::start_tls().expect("nats-server"))
    }

    /// The environment a `streamfleet` child needs to trust this server: `SF_NATS_CA`.
    pub fn ca_env(&self) -> Vec<(&'static str, std::path::PathBuf)> {
        self.ca().into_iter().map(|ca| ("SF_NATS_CA", ca)).collect()
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
    /// Starts `streamfleet workers` (with `more` flags) on `nats` and waits until it is ready.
    pub fn workers(nats: &Nats, more: &[&str]) -> NodeProcess {
        let mut workers = Command::new(env!("CARGO_BIN_EXE_streamfleet"));
        workers
            .args(["workers", "--nats-url", &nats.url])
            .args(more)
            .env("SF_WORKER_PASSWORD", nats.password("worker"))
            .env(
                "SF_TOKEN_KEY",
                streamfleet_workers::TokenKey::generate_hex(),
            )
            .envs(nats.ca_env());
        Self::spawn_command(workers).0
    }

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
            .env("SF_NODE_PASSWORD", nats.password("node"))
            .envs(nats.ca_env())
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

/// Registers `app_id` as an operator does (`RegisterApp`), from a thread of its own so that a
/// synchronous start can call it inside a test runtime.
pub fn register_app(nats: &Nats, app_id: &str) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime
                    .block_on(nats.register_app(app_id))
                    .unwrap_or_else(|e| panic!("registering {app_id}: {e}"));
            })
            .join()
            .expect("the registration thread");
    });
}

/// A nats-server and a node on a fresh data folder, with the app the tests run (`chess`)
/// registered.
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
        register_app(&nats, "chess");
        System {
            nats,
            _node: node,
            _data: data,
        }
    }
}
