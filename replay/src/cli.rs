//! `streamfleet replay …`: the auditors' command line. Each subcommand reads a log file
//! (`--file`, read-only) or the live node (NATS, user `auditor`, password from
//! `SF_AUDITOR_PASSWORD`).
//!
//! [`run`] returns whether what was checked is sound: `false` (a failed verification, a
//! non-empty diff) makes the binary exit 1.

use crate::export::{Compression, export, verify_export};
use crate::progress::ProgressMode;
use crate::read::{Filter, Format, Printer};
use crate::source::{Flow, Source};
use crate::{
    Moment, ReplayError, aggregate_as_of, diff_live, rebuild_into, verify_file, view_as_of,
};
use chrono::{DateTime, Utc};
use std::io::Write;
use std::path::PathBuf;
use streamfleet_bus_client::NatsLogin;
use uuid::Uuid;

/// Where to read history from.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Read this log file (a copy, or a stopped node's events.redb), read-only. Without it,
    /// read the live node over NATS.
    #[arg(long, value_name = "LOG")]
    pub file: Option<PathBuf>,
    /// NATS server of the live node.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// The auditor's NATS password (user `auditor` in nats.conf; `up` writes it to
    /// .streamfleet/credentials.env).
    #[arg(long, env = "SF_AUDITOR_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
}

impl SourceArgs {
    /// Opens the file, or connects to the node.
    pub async fn open(&self) -> Result<Source, ReplayError> {
        match &self.file {
            Some(path) => Source::file(path),
            None => {
                let password = self.nats_password.clone().ok_or_else(|| {
                    ReplayError::Request(
                        "reading the live node needs the auditor's password: set \
                         SF_AUDITOR_PASSWORD (see .streamfleet/credentials.env) or pass --file"
                            .into(),
                    )
                })?;
                Source::live(
                    &NatsLogin::new(&self.nats_url, "auditor", password)
                        .with_ca(self.nats_ca.clone()),
                )
                .await
            }
        }
    }
}

/// How long runs show progress.
#[derive(Debug, Clone, clap::Args)]
pub struct ProgressArgs {
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
    /// Plain progress lines even on a terminal.
    #[arg(long, conflicts_with = "quiet")]
    pub plain: bool,
}

impl ProgressArgs {
    fn mode(&self) -> ProgressMode {
        match (self.quiet, self.plain) {
            (true, _) => ProgressMode::Quiet,
            (_, true) => ProgressMode::Plain,
            _ => ProgressMode::Auto,
        }
    }
}

/// The auditors' subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ReplayCmd {
    /// Print history, filtered, as a table or CloudEvents JSON lines; `--follow` goes on live.
    Read {
        #[command(flatten)]
        source: SourceArgs,
        /// Only this stream (repeatable).
        #[arg(long)]
        stream: Vec<String>,
        /// Only this category, e.g. `session` (repeatable).
        #[arg(long)]
        category: Vec<String>,
        /// Only this event type, e.g. `SessionEnded` (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Only events recorded at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Only events recorded at or before this time (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// First position.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last position (default: the head when the read starts).
        #[arg(long)]
        to: Option<u64>,
        /// Only events of this correlation id.
        #[arg(long)]
        correlation: Option<Uuid>,
        /// Only events caused by this sender (repeatable): a role (`operator`), a host
        /// (`host.h1`), or `host.*` for every host.
        #[arg(long = "actor")]
        actors: Vec<String>,
        /// Output.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Keep following new events (live node only).
        #[arg(long)]
        follow: bool,
        /// Stop after this many printed events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Check every record's checksum and the hash chain; exits 1 naming the first bad position.
    Verify {
        /// The log file (a copy, or a stopped node's events.redb).
        #[arg(long, value_name = "LOG")]
        file: PathBuf,
        /// First position.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last position (default: the last in the file).
        #[arg(long)]
        to: Option<u64>,
        /// Check the log against the node's signed checkpoints too: the node's public key, as
        /// hex or the path of its `checkpoint.pub`.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// The signed checkpoints (default: `checkpoints.jsonl` beside the log file).
        #[arg(long, value_name = "FILE", requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// The state of one aggregate (a stream such as `session-…`, `host-…`, `token-…`) or one
    /// view at a position or time, from history alone.
    AsOf {
        #[command(flatten)]
        source: SourceArgs,
        /// The stream, e.g. `session-0190…`.
        #[arg(required_unless_present = "view", conflicts_with = "view")]
        stream: Option<String>,
        /// A view instead: heartbeats, consistency, sessions, hosts or rollouts.
        #[arg(long)]
        view: Option<String>,
        /// Just after this position.
        #[arg(long, conflicts_with = "time")]
        position: Option<u64>,
        /// Everything recorded at or before this time (RFC 3339).
        #[arg(long)]
        time: Option<DateTime<Utc>>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build every view from position 1 into a fresh folder.
    Rebuild {
        #[command(flatten)]
        source: SourceArgs,
        /// The folder to build into (absent or empty).
        #[arg(long)]
        out: PathBuf,
        /// Last position (default: the head now).
        #[arg(long)]
        until: Option<u64>,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Compare a projections folder (of a stopped `projections serve`) with a rebuild from
    /// history up to its checkpoints; exits 1 naming every row that differs.
    Diff {
        #[command(flatten)]
        source: SourceArgs,
        /// The live projections folder, e.g. .streamfleet/projections.
        #[arg(long)]
        live: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Write a range as CloudEvents JSON lines with a manifest (`<out>.manifest.json`).
    Export {
        /// The log file.
        #[arg(long, value_name = "LOG")]
        file: PathBuf,
        /// The data file to write.
        #[arg(long)]
        out: PathBuf,
        /// First position.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last position (default: the last in the file).
        #[arg(long)]
        to: Option<u64>,
        /// Compression of the data file.
        #[arg(long, value_enum, default_value_t = Compression::None)]
        compression: Compression,
        /// The node's signed checkpoints to carry in the manifest (default:
        /// `checkpoints.jsonl` beside the log file, when there is one).
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Verify an export from its data file and manifest alone; exits 1 naming the first bad
    /// line.
    VerifyExport {
        /// The export's data file (its manifest is beside it).
        data: PathBuf,
        /// Check the export against the node's signed checkpoints its manifest carries: the
        /// node's public key, as hex (`checkpoint.pub` in its data folder).
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        progress: ProgressArgs,
    },
}

fn moment(position: Option<u64>, time: Option<DateTime<Utc>>) -> Moment {
    match (position, time) {
        (Some(p), _) => Moment::Position(p),
        (None, Some(t)) => Moment::Time(t),
        (None, None) => Moment::Now,
    }
}

fn json_line(value: &impl serde::Serialize) -> Result<(), ReplayError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ReplayError::Request(format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn stdout_error(e: std::io::Error) -> ReplayError {
    ReplayError::io("<stdout>", e)
}

/// Runs one subcommand, printing to standard output. `Ok(false)`: what was checked is not
/// sound (verification failed, views differ).
pub async fn run(cmd: ReplayCmd) -> Result<bool, ReplayError> {
    match cmd {
        ReplayCmd::Read {
            source,
            stream,
            category,
            types,
            since,
            until,
            from,
            to,
            correlation,
            actors,
            format,
            follow,
            limit,
        } => {
            let source = source.open().await?;
            let filter = Filter {
                streams: stream,
                categories: category,
                types,
                since,
                until,
                correlation,
                actors,
            };
            let stdout = std::io::stdout().lock();
            let mut printer = Printer::new(format, std::io::BufWriter::new(stdout));
            let mut broken_pipe = false;
            source
                .scan(from, to, follow, async |e| {
                    let meta = e
                        .meta()
                        .map_err(|problem| source.event_error(e.position, problem))?;
                    if !filter.keeps(&meta) {
                        return Ok(Flow::Continue);
                    }
                    match printer.print(&e, &meta) {
                        Ok(()) => {}
                        // `| head`: stop quietly.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                            broken_pipe = true;
                            return Ok(Flow::Stop);
                        }
                        Err(e) => return Err(stdout_error(e)),
                    }
                    if follow {
                        printer.flush().map_err(stdout_error)?;
                    }
                    let done = limit.is_some_and(|l| printer.rows() >= l);
                    Ok(if done { Flow::Stop } else { Flow::Continue })
                })
                .await?;
            if !broken_pipe {
                printer.flush().map_err(stdout_error)?;
            }
            Ok(true)
        }
        ReplayCmd::Verify {
            file,
            from,
            to,
            public_key,
            checkpoints,
            json,
            progress,
        } => {
            let source = Source::file(&file)?;
            let log = source
                .log_file()
                .ok_or_else(|| ReplayError::Request("verify reads a log file".into()))?;
            let mut summary = verify_file(log, from, to, progress.mode())?;
            if let Some(key) = public_key
                && summary.ok
            {
                let bad = |e: streamfleet_eventlog::checkpoint::CheckpointError| {
                    ReplayError::Request(e.to_string())
                };
                let key = match std::fs::read_to_string(&key) {
                    Ok(text) => text,
                    Err(_) => key,
                };
                let public =
                    streamfleet_eventlog::checkpoint::public_key_from_hex(&key).map_err(bad)?;
                let path = checkpoints.unwrap_or_else(|| file.with_file_name("checkpoints.jsonl"));
                let signed = streamfleet_eventlog::checkpoint::CheckpointFile::new(path)
                    .read()
                    .map_err(bad)?;
                match crate::check_checkpoints(log, &signed, &public)? {
                    Ok(check) => summary.checkpoints = Some(check),
                    Err(failure) => {
                        summary.ok = false;
                        summary.failure = Some(failure);
                    }
                }
            }
            if json {
                json_line(&summary)?;
            } else {
                println!("{summary}");
            }
            Ok(summary.ok)
        }
        ReplayCmd::AsOf {
            source,
            stream,
            view,
            position,
            time,
            json,
        } => {
            let source = source.open().await?;
            let moment = moment(position, time);
            if let Some(view) = view {
                let (at, rows) = view_as_of(&source, &view, moment).await?;
                if json {
                    let rows: Vec<_> = rows
                        .iter()
                        .map(|r| {
                            serde_json::json!({
                                "table": r.table, "key": r.key,
                                "row": streamfleet_projections::store::describe(&r.table, &r.bytes),
                            })
                        })
                        .collect();
                    json_line(&serde_json::json!({"view": view, "position": at, "rows": rows}))?;
                } else {
                    println!("view {view} as of position {at}: {} rows", rows.len());
                    for r in &rows {
                        println!(
                            "  {}/{}: {}",
                            r.table,
                            r.key,
                            streamfleet_projections::store::describe(&r.table, &r.bytes)
                        );
                    }
                }
                return Ok(true);
            }
            let stream = stream.unwrap_or_default();
            let then = aggregate_as_of(&source, &stream, moment).await?;
            if json {
                json_line(&then)?;
            } else if then.version == 0 {
                println!("{stream} did not exist yet at {moment:?}");
            } else {
                let state = serde_json::to_string_pretty(&then.state)
                    .map_err(|e| ReplayError::Request(format!("cannot print the state: {e}")))?;
                println!(
                    "{stream} at version {} (position {}, recorded {}):\n{state}",
                    then.version,
                    then.position,
                    then.time.map_or("-".into(), |t| t.to_rfc3339())
                );
            }
            Ok(true)
        }
        ReplayCmd::Rebuild {
            source,
            out,
            until,
            progress,
        } => {
            let fresh = std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_none());
            if !fresh {
                return Err(ReplayError::Request(format!(
                    "{} is not empty: rebuild into a fresh folder",
                    out.display()
                )));
            }
            let source = source.open().await?;
            let until = match until {
                Some(u) => u,
                None => source.head().await?,
            };
            let stored = rebuild_into(&source, &out, until, progress.mode()).await?;
            println!(
                "rebuilt every view into {} up to position {stored}",
                out.display()
            );
            Ok(true)
        }
        ReplayCmd::Diff {
            source,
            live,
            json,
            progress,
        } => {
            let source = source.open().await?;
            let diff = diff_live(&source, &live, progress.mode()).await?;
            if json {
                json_line(&diff)?;
            } else {
                let mut out = std::io::stdout().lock();
                for d in &diff.differences {
                    let side = |s: &Option<String>| s.clone().unwrap_or_else(|| "(absent)".into());
                    writeln!(
                        out,
                        "{}/{}/{}:\n  live    {}\n  rebuilt {}",
                        d.view,
                        d.table,
                        d.key,
                        side(&d.a),
                        side(&d.b)
                    )
                    .map_err(stdout_error)?;
                }
                let at: Vec<String> = diff
                    .checkpoints
                    .iter()
                    .map(|(v, p)| format!("{v}@{p}"))
                    .collect();
                writeln!(
                    out,
                    "{} rows differ ({})",
                    diff.differences.len(),
                    at.join(", ")
                )
                .map_err(stdout_error)?;
            }
            Ok(diff.differences.is_empty())
        }
        ReplayCmd::Export {
            file,
            out,
            from,
            to,
            compression,
            checkpoints,
            progress,
        } => {
            let source = Source::file(&file)?;
            let log = source
                .log_file()
                .ok_or_else(|| ReplayError::Request("export reads a log file".into()))?;
            let path = checkpoints.unwrap_or_else(|| file.with_file_name("checkpoints.jsonl"));
            let signed = streamfleet_eventlog::checkpoint::CheckpointFile::new(&path)
                .read()
                .map_err(|e| ReplayError::Request(format!("{}: {e}", path.display())))?;
            let manifest = export(log, &out, from, to, compression, progress.mode(), &signed)?;
            println!(
                "exported positions {}..={} ({} events) to {}\n  manifest {}\n  chain at {}: {}",
                manifest.first_position,
                manifest.last_position,
                manifest.events,
                out.display(),
                crate::export::manifest_path(&out).display(),
                manifest.last_position,
                manifest.chain_at_end
            );
            Ok(true)
        }
        ReplayCmd::VerifyExport {
            data,
            public_key,
            json,
            progress,
        } => {
            let public = match public_key {
                Some(key) => Some(
                    streamfleet_eventlog::checkpoint::public_key_from_hex(&key)
                        .map_err(|e| ReplayError::Request(e.to_string()))?,
                ),
                None => None,
            };
            let check = verify_export(&data, progress.mode(), public.as_ref())?;
            if json {
                json_line(&check)?;
            } else {
                println!("{check}");
            }
            Ok(check.ok)
        }
    }
}
