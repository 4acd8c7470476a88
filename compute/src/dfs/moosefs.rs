//! MooseFS as a node runs it: its configuration files, its folders on the node's volume, the
//! metadata node's restore (the change log replayed onto the last checkpoint) and checkpoint
//! figures, and the two requests the probes send on MooseFS's own protocol.
//!
//! Invariant: the master logs every change with an fsync (`CHANGELOG_SAVE_MODE = 2`) before it
//! answers, so whatever a client saw acknowledged is on the volume when the master dies, even
//! when the volume's host dies with it; a probe counts as an answer only when the daemon replied
//! to a request (a stopped process still completes TCP handshakes).

use super::NodeError;
use crate::process::run;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;
use streamfleet_bus_schemas::dfs::{ChunkServerSeen, NodeRole};

/// The master's port for clients (and for the probe's list of chunk servers).
pub const MASTER_CLIENT_PORT: u16 = 9421;
/// A chunk server's port.
pub const CHUNK_SERVER_PORT: u16 = 9422;
/// Where a node's volume is inside its container.
pub const VOLUME_IN_CONTAINER: &str = "/data";

const CLTOMA_CSERV_LIST: u32 = 500;
const MATOCL_CSERV_LIST: u32 = 501;
const CLTOCS_HDD_LIST: u32 = 600;
const CSTOCL_HDD_LIST: u32 = 601;
/// MooseFS's no-operation packet (keep-alive), skipped when it comes first.
const ANTOAN_NOP: u32 = 0;

/// The configuration file of a node, its name on the volume, and the daemon's arguments.
pub fn config(role: NodeRole, address: &str, master: &str, data_path: &str) -> (String, String) {
    match role {
        NodeRole::Metadata => (
            "mfsmaster.cfg".into(),
            format!(
                "# Written by Streamfleet on every launch.\n\
                 WORKING_USER = mfs\n\
                 WORKING_GROUP = mfs\n\
                 DATA_PATH = {data_path}/meta\n\
                 EXPORTS_FILENAME = {data_path}/mfsexports.cfg\n\
                 TOPOLOGY_FILENAME = {data_path}/mfstopology.cfg\n\
                 # Every change fsynced before it is acknowledged: nothing acknowledged is lost\n\
                 # when the volume's host dies.\n\
                 CHANGELOG_SAVE_MODE = 2\n\
                 MATOML_LISTEN_HOST = {address}\n\
                 MATOCS_LISTEN_HOST = {address}\n\
                 MATOCL_LISTEN_HOST = {address}\n\
                 NICE_LEVEL = 0\n"
            ),
        ),
        NodeRole::Data => (
            "mfschunkserver.cfg".into(),
            format!(
                "# Written by Streamfleet on every launch.\n\
                 WORKING_USER = mfs\n\
                 WORKING_GROUP = mfs\n\
                 DATA_PATH = {data_path}/cs\n\
                 HDD_CONF_FILENAME = {data_path}/mfshdd.cfg\n\
                 HDD_LEAVE_SPACE_DEFAULT = 4MiB\n\
                 MASTER_HOST = {master}\n\
                 BIND_HOST = {address}\n\
                 CSSERV_LISTEN_HOST = {address}\n\
                 NICE_LEVEL = 0\n"
            ),
        ),
    }
}

/// The daemon's command line inside the container.
pub fn daemon_args(role: NodeRole) -> Vec<String> {
    let cfg = format!("{VOLUME_IN_CONTAINER}/{}", config(role, "", "", "").0);
    match role {
        // `-a`: always restore from the change logs (a clean stop's image is renamed on start).
        NodeRole::Metadata => vec![
            "/usr/sbin/mfsmaster".into(),
            "-f".into(),
            "-a".into(),
            "-c".into(),
            cfg,
        ],
        NodeRole::Data => vec![
            "/usr/sbin/mfschunkserver".into(),
            "-f".into(),
            "-c".into(),
            cfg,
        ],
    }
}

/// Lays out a node's volume mounted at `mount` (first use: an empty file system for the
/// metadata node, empty chunk folders for a data node; never over what is there) and writes its
/// configuration; everything belongs to user `mfs`.
pub async fn prepare_volume(
    mount: &Path,
    role: NodeRole,
    address: &str,
    master: &str,
) -> Result<(), NodeError> {
    let (name, text) = config(role, address, master, VOLUME_IN_CONTAINER);
    let write = |file: &str, text: &str| {
        let path = mount.join(file);
        std::fs::write(&path, text).map_err(NodeError::io(&path))
    };
    write(&name, &text)?;
    match role {
        NodeRole::Metadata => {
            write("mfsexports.cfg", "* / rw,alldirs,maproot=0\n")?;
            write("mfstopology.cfg", "")?;
            let meta = mount.join("meta");
            if !meta.exists() {
                let fresh = mount.join("meta.partial");
                std::fs::create_dir_all(&fresh).map_err(NodeError::io(&fresh))?;
                let empty = Path::new("/var/lib/mfs/metadata.mfs.empty");
                std::fs::copy(empty, fresh.join("metadata.mfs")).map_err(NodeError::io(empty))?;
                std::fs::rename(&fresh, &meta).map_err(NodeError::io(&meta))?;
            }
        }
        NodeRole::Data => {
            write("mfshdd.cfg", &format!("{VOLUME_IN_CONTAINER}/chunks\n"))?;
            for folder in ["cs", "chunks"] {
                let path = mount.join(folder);
                std::fs::create_dir_all(&path).map_err(NodeError::io(&path))?;
            }
        }
    }
    run("chown", &["-R", "mfs:mfs", &mount.display().to_string()]).await?;
    Ok(())
}

/// What a restore did: the checkpoint it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Change-log entries replayed.
    pub replayed: u64,
    /// The metadata version the new image covers.
    pub version: u64,
    /// The image's size.
    pub image_bytes: u64,
}

/// Replays the metadata node's change logs onto its last checkpoint, writing a fresh
/// checkpoint (`mfsmaster -a restore`, MooseFS's own restore, which then exits), on the volume
/// mounted at `mount`; `scratch` holds the host-side configuration it runs with.
pub async fn restore(mount: &Path, scratch: &Path) -> Result<Restored, NodeError> {
    std::fs::create_dir_all(scratch).map_err(NodeError::io(scratch))?;
    let cfg = scratch.join("restore.cfg");
    let (_, text) = config(
        NodeRole::Metadata,
        "127.0.0.1",
        "",
        &mount.display().to_string(),
    );
    std::fs::write(&cfg, text).map_err(NodeError::io(&cfg))?;
    let out = tokio::process::Command::new("mfsmaster")
        .args(["-a", "-c", &cfg.display().to_string(), "restore"])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| NodeError::Restore(format!("mfsmaster: {e}")))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let tail: Vec<&str> = said.lines().rev().take(3).collect();
        return Err(NodeError::Restore(format!(
            "mfsmaster -a restore: {}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    let (version, image_bytes) = checkpoint_figures(&mount.join("meta"))?;
    Ok(Restored {
        replayed: replayed_in(&said),
        version,
        image_bytes,
    })
}

/// The number of change-log entries a restore's output says it applied: its last progress
/// line, `current change: N (first:A - last:B …)`, applied B - A + 1 (none when B < A).
pub fn replayed_in(output: &str) -> u64 {
    let Some(at) = output.rfind("(first:") else {
        return 0;
    };
    let rest = &output[at + "(first:".len()..];
    let first: u64 = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let last: u64 = rest
        .split("last:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if last >= first { last - first + 1 } else { 0 }
}

/// The version and size of the checkpoint image `metadata.mfs` in `meta` (its header: the
/// signature `MFSM 2.0`, then the version, big-endian).
pub fn checkpoint_figures(meta: &Path) -> Result<(u64, u64), NodeError> {
    let image = meta.join("metadata.mfs");
    let mut file = std::fs::File::open(&image).map_err(NodeError::io(&image))?;
    let size = file.metadata().map_err(NodeError::io(&image))?.len();
    let mut header = [0u8; 16];
    file.read_exact(&mut header)
        .map_err(NodeError::io(&image))?;
    if &header[..4] != b"MFSM" {
        return Err(NodeError::Restore(format!(
            "{} is not a MooseFS metadata image",
            image.display()
        )));
    }
    let mut version = [0u8; 8];
    version.copy_from_slice(&header[8..16]);
    Ok((u64::from_be_bytes(version), size))
}

/// Sends one MooseFS request (`command`, no data) to `address` and reads the answer of type
/// `answer`, within `timeout` overall.
fn request(
    address: SocketAddr,
    command: u32,
    answer: u32,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("connect {address}: {e}"))?;
    let left = || {
        deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    let mut packet = command.to_be_bytes().to_vec();
    packet.extend(0u32.to_be_bytes());
    stream
        .write_all(&packet)
        .map_err(|e| format!("send to {address}: {e}"))?;
    loop {
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        let mut header = [0u8; 8];
        stream
            .read_exact(&mut header)
            .map_err(|e| format!("no answer from {address}: {e}"))?;
        let kind = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if length > 1 << 20 {
            return Err(format!("{address} announced {length} bytes"));
        }
        let mut body = vec![0u8; length];
        stream
            .read_exact(&mut body)
            .map_err(|e| format!("short answer from {address}: {e}"))?;
        if kind == ANTOAN_NOP {
            continue;
        }
        if kind != answer {
            return Err(format!("{address} answered type {kind}, not {answer}"));
        }
        return Ok(body);
    }
}

/// Asks the master at `address` for its chunk servers (its block reports as it holds them).
pub fn chunk_servers(address: &str, timeout: Duration) -> Result<Vec<ChunkServerSeen>, String> {
    let at: SocketAddr = format!("{address}:{MASTER_CLIENT_PORT}")
        .parse()
        .map_err(|e| format!("{address}: {e}"))?;
    let body = request(at, CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST, timeout)?;
    parse_chunk_servers(&body)
}

/// The master's list of chunk servers, in 3.0's 69-byte records: flags, version (3), address
/// (4), port, id, used, total, chunks, …
pub fn parse_chunk_servers(body: &[u8]) -> Result<Vec<ChunkServerSeen>, String> {
    const RECORD: usize = 69;
    if !body.len().is_multiple_of(RECORD) {
        return Err(format!(
            "a chunk-server list of {} bytes is not 3.0's",
            body.len()
        ));
    }
    Ok(body
        .chunks(RECORD)
        .map(|r| ChunkServerSeen {
            address: format!("{}.{}.{}.{}", r[4], r[5], r[6], r[7]),
            chunks: u32::from_be_bytes([r[28], r[29], r[30], r[31]]),
            connected: r[0] & 1 == 0,
        })
        .collect())
}

/// Probes a node at `address`: whether its daemon answered a request, and what the probe saw.
pub fn probe(role: NodeRole, address: &str, timeout: Duration) -> (bool, String) {
    let result = match role {
        NodeRole::Metadata => chunk_servers(address, timeout).map(|list| {
            format!(
                "master answers; {} chunk server(s) connected",
                list.iter().filter(|c| c.connected).count()
            )
        }),
        NodeRole::Data => format!("{address}:{CHUNK_SERVER_PORT}")
            .parse::<SocketAddr>()
            .map_err(|e| e.to_string())
            .and_then(|at| request(at, CLTOCS_HDD_LIST, CSTOCL_HDD_LIST, timeout))
            .map(|_| "chunk server answers".to_string()),
    };
    match result {
        Ok(words) => (true, words),
        Err(words) => (false, words),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_says_how_many_changes_it_replayed() {
        let out = "loading metadata ...\nprogress: current change: 107 (first:1 - last:107 - 100% - ETA:finished)\n";
        assert_eq!(replayed_in(out), 107);
        let none = "progress: current change: 0 (first:108 - last:0 - 100% - ETA:finished)";
        assert_eq!(replayed_in(none), 0);
        assert_eq!(replayed_in("no progress line"), 0);
    }

    #[test]
    fn the_chunk_server_list_reads_address_chunks_and_connection() {
        let mut record = vec![0u8; 69];
        record[4..8].copy_from_slice(&[10, 77, 0, 5]);
        record[28..32].copy_from_slice(&42u32.to_be_bytes());
        let mut gone = record.clone();
        gone[0] = 1;
        gone[7] = 6;
        let list = parse_chunk_servers(&[record, gone].concat()).unwrap();
        assert_eq!(
            list[0],
            ChunkServerSeen {
                address: "10.77.0.5".into(),
                chunks: 42,
                connected: true
            }
        );
        assert!(!list[1].connected);
        assert!(parse_chunk_servers(&[0u8; 70]).is_err());
    }

    #[test]
    fn the_master_fsyncs_every_change() {
        let (name, text) = config(NodeRole::Metadata, "10.77.0.2", "", "/data");
        assert_eq!(name, "mfsmaster.cfg");
        assert!(text.contains("CHANGELOG_SAVE_MODE = 2"));
        assert!(text.contains("MATOCL_LISTEN_HOST = 10.77.0.2"));
        let (_, cs) = config(NodeRole::Data, "10.77.0.3", "10.77.0.2", "/data");
        assert!(cs.contains("MASTER_HOST = 10.77.0.2") && cs.contains("BIND_HOST = 10.77.0.3"));
    }
}
