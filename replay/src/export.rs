//! Exporting a range of the log to a file any tool can read, and verifying such an export alone.
//!
//! The data file holds one CloudEvents JSON object per line, in position order:
//!
//! ```text
//! {"position":7,"streamversion":2,"chainhash":"<64 hex>","commandid":"<uuid>",<the stored body without its "{">
//! ```
//!
//! `chainhash` and `commandid` (absent when the append named no command) are CloudEvents
//! extension attributes; with `position`, `streamversion` and the body (whose `subject` is the
//! stream) they are everything the log's hash chain covers, so [`verify_export`] recomputes the
//! chain line by line from the manifest's `chain_before` and must arrive at its `chain_at_end`
//! — the same hash `streamfleet replay verify --to <last>` prints for the log itself.
//!
//! Invariant: an export is written to a temporary name and renamed into place only once every
//! record in the range has passed its checksum and chain check; a damaged log gives an error
//! naming the position, never a partial export.

use crate::error::ReplayError;
use crate::progress::{Progress, ProgressMode};
use chrono::{DateTime, Utc};
use flate2::Compression as Level;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use streamfleet_eventlog::{LogFile, StoredEvent};
use uuid::Uuid;

/// The export format this build writes and reads.
pub const EXPORT_FORMAT: &str = "streamfleet-export/1";

/// How the data file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain JSON lines.
    None,
    /// gzip (RFC 1952): `zcat` reads it.
    Gzip,
}

/// What an export holds; written beside the data as `<data file>.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The data file's name (beside the manifest).
    pub data_file: String,
    /// Its compression.
    pub compression: Compression,
    /// The log it came from.
    pub source: String,
    /// When it was written.
    pub exported_at: DateTime<Utc>,
    /// First position.
    pub first_position: u64,
    /// Last position.
    pub last_position: u64,
    /// Events (lines).
    pub events: u64,
    /// The log's chain hash before the first position (hex; zeros from position 1).
    pub chain_before: String,
    /// The log's chain hash at the last position (hex).
    pub chain_at_end: String,
    /// BLAKE3 of the uncompressed lines (hex).
    pub data_blake3: String,
    /// Events per type.
    pub types: BTreeMap<String, u64>,
    /// The node's signed checkpoints within the exported range (whose chain hashes the lines
    /// must reproduce): what lets `verify-export --public-key` catch an export rewritten and
    /// re-chained whole, manifest and all. Absent in exports of logs without checkpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<streamfleet_eventlog::checkpoint::Checkpoint>,
}

/// The manifest's path for a data file.
pub fn manifest_path(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

fn hex(h: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*h).to_hex().to_string()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(s).ok().map(|h| *h.as_bytes())
}

#[derive(Deserialize)]
struct TypeAndSubject<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    subject: Cow<'a, str>,
}

/// Exports positions `from..=to` (`None`: the last) of `file` to `out`, checking every record's
/// checksum and chain on the way; writes the manifest beside it, with the `checkpoints` that
/// fall in the range and that the log matches, and returns it.
pub fn export(
    file: &LogFile,
    out: &Path,
    from: u64,
    to: Option<u64>,
    compression: Compression,
    progress: ProgressMode,
    checkpoints: &[streamfleet_eventlog::checkpoint::Checkpoint],
) -> Result<Manifest, ReplayError> {
    let name = file.path().display().to_string();
    let read_err = |error| ReplayError::Read {
        source_name: name.clone(),
        error,
    };
    let (from, last) = crate::verify::file_range(file, from, to)?;
    if last < from {
        return Err(ReplayError::Request(format!(
            "{name}: nothing to export in positions {from}..={last}"
        )));
    }
    let chain_before = if from == 1 {
        streamfleet_eventlog::record::GENESIS
    } else {
        file.records(from - 1, Some(from - 1))
            .map_err(read_err)?
            .next()
            .ok_or_else(|| {
                ReplayError::Request(format!("{name}: position {} is missing", from - 1))
            })?
            .map_err(read_err)?
            .chain
    };
    let partial = {
        let mut p = out.as_os_str().to_owned();
        p.push(".partial");
        PathBuf::from(p)
    };
    let created = std::fs::File::create(&partial).map_err(|e| ReplayError::io(&partial, e))?;
    let buffered = BufWriter::with_capacity(1 << 20, created);
    let mut sink: Box<dyn Write> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(GzEncoder::new(buffered, Level::fast())),
    };
    let mut hasher = blake3::Hasher::new();
    let mut types = BTreeMap::<String, u64>::new();
    let mut shown = Progress::new(progress, "export", last - from + 1);
    let mut prev = chain_before;
    let mut expected = from;
    let mut line = Vec::with_capacity(4096);
    let mut failure: Option<ReplayError> = None;
    let mut io_failure: Option<std::io::Error> = None;
    // The checkpoints the export will carry, by position: each must match the record there.
    let mut wanted: BTreeMap<u64, &streamfleet_eventlog::checkpoint::Checkpoint> = checkpoints
        .iter()
        .filter(|c| (from..=last).contains(&c.position))
        .map(|c| (c.position, c))
        .collect();
    let mut carried = Vec::new();
    file.for_each_raw(from, Some(last), |position, bytes| {
        let bad = |problem: String| {
            ReplayError::Request(format!(
                "{name}: position {position}: {problem}; nothing exported"
            ))
        };
        if position != expected {
            failure = Some(bad(format!("position {expected} is missing")));
            return false;
        }
        // One CRC check (decode), one chain hash.
        let record = match StoredEvent::decode(position, bytes) {
            Ok(r) => r,
            Err(problem) => {
                failure = Some(bad(problem.to_string()));
                return false;
            }
        };
        if record.expected_chain(&prev) != record.chain {
            failure = Some(bad(
                streamfleet_eventlog::Corruption::ChainBroken.to_string()
            ));
            return false;
        }
        prev = record.chain;
        if let Some(cp) = wanted.remove(&position) {
            if cp.chain_hash().ok() != Some(record.chain) {
                failure = Some(bad(
                    "the log no longer matches the checkpoint signed there (history was \
                     rewritten: run `replay verify --public-key`)"
                        .into(),
                ));
                return false;
            }
            carried.push(cp.clone());
        }
        match serde_json::from_slice::<TypeAndSubject<'_>>(&record.body) {
            Ok(t) if t.subject == record.stream => {
                *types.entry(t.event_type.into_owned()).or_default() += 1;
            }
            Ok(t) => {
                failure = Some(bad(format!(
                    "its subject `{}` is not its stream `{}`",
                    t.subject, record.stream
                )));
                return false;
            }
            Err(e) => {
                failure = Some(bad(format!("unreadable body: {e}")));
                return false;
            }
        }
        line.clear();
        write_line(&mut line, &record);
        hasher.update(&line);
        if let Err(e) = sink.write_all(&line) {
            io_failure = Some(e);
            return false;
        }
        expected += 1;
        if position.is_multiple_of(4096) {
            shown.set(position - from + 1);
        }
        true
    })
    .map_err(read_err)?;
    shown.finish();
    let finished = match (failure, io_failure) {
        (Some(f), _) => Err(f),
        (None, Some(e)) => Err(ReplayError::io(&partial, e)),
        (None, None) if expected != last + 1 => Err(ReplayError::Request(format!(
            "{name}: position {expected} is missing; nothing exported"
        ))),
        (None, None) => sink.flush().map_err(|e| ReplayError::io(&partial, e)),
    };
    drop(sink);
    if let Err(e) = finished {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let manifest = Manifest {
        format: EXPORT_FORMAT.to_string(),
        data_file: out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        compression,
        source: name,
        exported_at: Utc::now(),
        first_position: from,
        last_position: last,
        events: last - from + 1,
        chain_before: hex(&chain_before),
        chain_at_end: hex(&prev),
        data_blake3: hasher.finalize().to_hex().to_string(),
        types,
        checkpoints: carried,
    };
    // The data is complete and synced before the manifest that vouches for it exists.
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| ReplayError::io(&partial, e))?;
    std::fs::rename(&partial, out).map_err(|e| ReplayError::io(out, e))?;
    let manifest_file = manifest_path(out);
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ReplayError::export(&manifest_file, e.to_string()))?;
    std::fs::write(&manifest_file, json).map_err(|e| ReplayError::io(&manifest_file, e))?;
    Ok(manifest)
}

/// Appends one export line (with its newline) for `record` to `out`.
fn write_line(out: &mut Vec<u8>, record: &StoredEvent) {
    out.extend_from_slice(b"{\"position\":");
    out.extend_from_slice(record.position.to_string().as_bytes());
    out.extend_from_slice(b",\"streamversion\":");
    out.extend_from_slice(record.stream_version.to_string().as_bytes());
    out.extend_from_slice(b",\"chainhash\":\"");
    out.extend_from_slice(hex(&record.chain).as_bytes());
    out.push(b'"');
    if let Some(c) = record.command_id {
        out.extend_from_slice(b",\"commandid\":\"");
        out.extend_from_slice(c.hyphenated().to_string().as_bytes());
        out.push(b'"');
    }
    out.push(b',');
    // Stored bodies are JSON objects: skipping their "{" leaves `"key":…}`.
    out.extend_from_slice(&record.body[1..]);
    out.push(b'\n');
}

/// One export line taken apart.
struct Line<'a> {
    position: u64,
    stream_version: u64,
    chain: [u8; 32],
    command_id: Option<Uuid>,
    /// The body without its opening `{`.
    body_rest: &'a [u8],
}

fn parse_line(line: &[u8]) -> Result<Line<'_>, String> {
    fn take(rest: &mut &[u8], lit: &str) -> Result<(), String> {
        match rest.strip_prefix(lit.as_bytes()) {
            Some(r) => {
                *rest = r;
                Ok(())
            }
            None => Err(format!("expected `{lit}`")),
        }
    }
    fn number(rest: &mut &[u8]) -> Result<u64, String> {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let n = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("expected a number")?;
        *rest = &rest[digits..];
        Ok(n)
    }
    fn quoted<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a str, String> {
        if rest.len() < len + 1 || rest[len] != b'"' {
            return Err(format!("expected a {len}-character string"));
        }
        let s = std::str::from_utf8(&rest[..len]).map_err(|_| "not text")?;
        *rest = &rest[len + 1..];
        Ok(s)
    }
    let mut rest = line.strip_suffix(b"\n").unwrap_or(line);
    take(&mut rest, "{\"position\":")?;
    let position = number(&mut rest)?;
    take(&mut rest, ",\"streamversion\":")?;
    let stream_version = number(&mut rest)?;
    take(&mut rest, ",\"chainhash\":\"")?;
    let chain = unhex(quoted(&mut rest, 64)?).ok_or("chainhash is not 64 hex digits")?;
    let command_id = if rest.starts_with(b",\"commandid\":\"") {
        take(&mut rest, ",\"commandid\":\"")?;
        Some(Uuid::parse_str(quoted(&mut rest, 36)?).map_err(|e| format!("commandid: {e}"))?)
    } else {
        None
    };
    take(&mut rest, ",")?;
    Ok(Line {
        position,
        stream_version,
        chain,
        command_id,
        body_rest: rest,
    })
}

/// What verifying an export found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportCheck {
    /// The data file.
    pub file: String,
    /// Whether every line and the manifest agree.
    pub ok: bool,
    /// Lines verified (up to the failure, when there is one).
    pub events: u64,
    /// The manifest's range.
    pub first_position: u64,
    /// See `first_position`.
    pub last_position: u64,
    /// The chain hash recomputed at the end (hex; empty on failure).
    pub chain_at_end: String,
    /// The last position a checkpoint signed by the given key vouches for (0: none checked).
    pub signed_through: u64,
    /// The first problem: line number (from 1), position when known, and what.
    pub failure: Option<ExportFailure>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Where an export stops agreeing with itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportFailure {
    /// Line number, from 1 (0: the manifest as a whole).
    pub line: u64,
    /// The position concerned, when known.
    pub position: Option<u64>,
    /// What.
    pub problem: String,
}

/// Verifies an export from its data file and manifest alone: every line's position follows
/// the last, its chain hash follows from the previous line's (from `chain_before`) over
/// exactly its content, and the count, last position, end chain and data hash match the
/// manifest. With the node's `public` key, the manifest must carry checkpoints signed by it
/// and the lines must reproduce the chain hash each states — so an export rewritten whole and
/// re-chained, manifest included, still fails (`checkpoint_forged`, `checkpoint_mismatch`,
/// `checkpoint_missing`).
pub fn verify_export(
    data: &Path,
    progress: ProgressMode,
    public: Option<&streamfleet_eventlog::checkpoint::VerifyingKey>,
) -> Result<ExportCheck, ReplayError> {
    let started = Instant::now();
    let manifest_file = manifest_path(data);
    let text = std::fs::read(&manifest_file).map_err(|e| ReplayError::io(&manifest_file, e))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| ReplayError::export(&manifest_file, format!("not an export manifest: {e}")))?;
    if manifest.format != EXPORT_FORMAT {
        return Err(ReplayError::export(
            &manifest_file,
            format!(
                "export format `{}` is not `{EXPORT_FORMAT}`, the one this build reads",
                manifest.format
            ),
        ));
    }
    let chain_before = unhex(&manifest.chain_before)
        .ok_or_else(|| ReplayError::export(&manifest_file, "chain_before is not 64 hex digits"))?;
    let opened = std::fs::File::open(data).map_err(|e| ReplayError::io(data, e))?;
    let reader: Box<dyn std::io::Read> = match manifest.compression {
        Compression::None => Box::new(opened),
        Compression::Gzip => Box::new(GzDecoder::new(BufReader::with_capacity(1 << 20, opened))),
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut check = ExportCheck {
        file: data.display().to_string(),
        ok: false,
        events: 0,
        first_position: manifest.first_position,
        last_position: manifest.last_position,
        chain_at_end: String::new(),
        signed_through: 0,
        failure: None,
        seconds: 0.0,
    };
    let mut signed: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    if let Some(public) = public {
        let problem =
            if manifest.checkpoints.is_empty() {
                Some("checkpoint_missing: the export carries no signed checkpoint".to_string())
            } else {
                manifest.checkpoints.iter().find_map(|cp| match cp.chain_hash() {
                Ok(chain) if cp.is_signed_by(public) => {
                    signed.insert(cp.position, chain);
                    None
                }
                _ => Some(format!(
                    "checkpoint_forged: the checkpoint at position {} is not signed by the key",
                    cp.position
                )),
            })
            };
        if let Some(problem) = problem {
            check.failure = Some(ExportFailure {
                line: 0,
                position: None,
                problem,
            });
            return Ok(check);
        }
    }
    let mut shown = Progress::new(progress, "verify-export", manifest.events);
    let mut hasher = blake3::Hasher::new();
    let mut prev = chain_before;
    let mut expected = manifest.first_position;
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    let fail = |check: &mut ExportCheck, line, position, problem: String| {
        check.failure = Some(ExportFailure {
            line,
            position,
            problem,
        });
    };
    loop {
        buf.clear();
        let read = match reader.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                fail(
                    &mut check,
                    line_no + 1,
                    None,
                    format!("unreadable data (truncated or damaged file?): {e}"),
                );
                break;
            }
        };
        if read == 0 {
            break;
        }
        line_no += 1;
        hasher.update(&buf);
        let line = match parse_line(&buf) {
            Ok(l) => l,
            Err(problem) => {
                fail(
                    &mut check,
                    line_no,
                    None,
                    format!("not an export line: {problem}"),
                );
                break;
            }
        };
        if line.position != expected {
            fail(
                &mut check,
                line_no,
                Some(line.position),
                format!("position {} where {expected} should follow", line.position),
            );
            break;
        }
        let mut body = Vec::with_capacity(line.body_rest.len() + 1);
        body.push(b'{');
        body.extend_from_slice(line.body_rest);
        let stream = match serde_json::from_slice::<TypeAndSubject<'_>>(&body) {
            Ok(t) => t.subject.into_owned(),
            Err(e) => {
                fail(
                    &mut check,
                    line_no,
                    Some(line.position),
                    format!("unreadable event: {e}"),
                );
                break;
            }
        };
        let record = StoredEvent {
            position: line.position,
            stream_version: line.stream_version,
            chain: line.chain,
            stream,
            command_id: line.command_id,
            body,
        };
        let chain = record.expected_chain(&prev);
        if chain != line.chain {
            fail(
                &mut check,
                line_no,
                Some(line.position),
                "content does not match its chain hash (altered, or not following the line before)"
                    .into(),
            );
            break;
        }
        if let Some(stated) = signed.get(&line.position) {
            if *stated != chain {
                fail(
                    &mut check,
                    line_no,
                    Some(line.position),
                    format!(
                        "checkpoint_mismatch: the chain here is not the one signed at position {}: \
                         the export was rewritten at or before it",
                        line.position
                    ),
                );
                break;
            }
            check.signed_through = line.position;
        }
        prev = chain;
        expected += 1;
        check.events += 1;
        if check.events.is_multiple_of(4096) {
            shown.set(check.events);
        }
    }
    shown.finish();
    check.seconds = started.elapsed().as_secs_f64();
    if check.failure.is_some() {
        return Ok(check);
    }
    let whole = |check: &mut ExportCheck, problem: String| {
        fail(check, 0, None, problem);
    };
    if check.events != manifest.events || expected != manifest.last_position + 1 {
        let problem = format!(
            "{} lines up to position {} but the manifest says {} events up to {}",
            check.events,
            expected.saturating_sub(1),
            manifest.events,
            manifest.last_position
        );
        whole(&mut check, problem);
    } else if hex(&prev) != manifest.chain_at_end {
        whole(
            &mut check,
            format!(
                "the chain ends at {} but the manifest says {}",
                hex(&prev),
                manifest.chain_at_end
            ),
        );
    } else if hasher.finalize().to_hex().as_str() != manifest.data_blake3 {
        whole(
            &mut check,
            "the data's BLAKE3 differs from the manifest's".into(),
        );
    } else {
        check.ok = true;
        check.chain_at_end = hex(&prev);
    }
    Ok(check)
}

impl std::fmt::Display for ExportCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            Some(x) => {
                write!(f, "FAILED {}: ", self.file)?;
                if x.line > 0 {
                    write!(f, "line {}", x.line)?;
                    if let Some(p) = x.position {
                        write!(f, " (position {p})")?;
                    }
                    write!(f, ": ")?;
                }
                write!(
                    f,
                    "{} ({} lines before it verified)",
                    x.problem, self.events
                )
            }
            None => write!(
                f,
                "ok {}: positions {}..={}: {} events, chain and manifest agree\n  chain at {}: {}\n  {:.2} s ({:.0} events/s)",
                self.file,
                self.first_position,
                self.last_position,
                self.events,
                self.last_position,
                self.chain_at_end,
                self.seconds,
                self.events as f64 / self.seconds.max(1e-9)
            ),
        }
    }
}
