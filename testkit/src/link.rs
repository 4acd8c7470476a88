//! A network namespace joined to this one by a veth pair, with a shaped link.
//!
//! Invariant: everything [`Link::create`] makes (the namespace, the veth pair, qdiscs and
//! nftables rules inside the namespace) is removed when the [`Link`] is dropped, however the
//! test or bench ends; traffic it carries stays between this machine and its own namespace.

use std::process::Command;

/// Why a link could not be made or shaped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A tool could not be run at all.
    #[error("{tool} could not be run: {detail}")]
    Tool {
        /// `ip`, `tc` or `nft`.
        tool: &'static str,
        /// Why.
        detail: String,
    },
    /// A step was refused (e.g. no permission to create namespaces).
    #[error("{step}: {detail}")]
    Refused {
        /// The command line.
        step: String,
        /// Its stderr.
        detail: String,
    },
}

/// A namespace `ns` with `client_ip` on its end of a veth pair, `host_ip` on this end.
#[derive(Debug)]
pub struct Link {
    /// The namespace.
    pub ns: String,
    /// This end of the pair (where host → namespace traffic is shaped).
    pub veth: String,
    /// This end's address.
    pub host_ip: String,
    /// The namespace end's address.
    pub client_ip: String,
}

fn run(tool: &'static str, args: &[&str]) -> Result<(), LinkError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| LinkError::Tool {
            tool,
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LinkError::Refused {
            step: format!("{tool} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Link {
    /// Makes the namespace and link; `tag` (one letter) keeps names of different users apart.
    /// An error when this machine does not allow it (callers may skip then, saying why).
    pub fn create(tag: char) -> Result<Link, LinkError> {
        let id = std::process::id() % 10_000;
        let n = rand::random_range(1..250u8);
        let link = Link {
            ns: format!("sf{tag}n{id}"),
            veth: format!("sf{tag}h{id}"),
            host_ip: format!("10.213.{n}.1"),
            client_ip: format!("10.213.{n}.2"),
        };
        let peer = format!("sf{tag}p{id}");
        let host_cidr = format!("{}/24", link.host_ip);
        let client_cidr = format!("{}/24", link.client_ip);
        run("ip", &["netns", "add", &link.ns])?;
        // From here on, drop removes whatever was made.
        let steps: [&[&str]; 7] = [
            &[
                "link", "add", &link.veth, "type", "veth", "peer", "name", &peer, "netns", &link.ns,
            ],
            &["addr", "add", &host_cidr, "dev", &link.veth],
            &["link", "set", &link.veth, "up"],
            &["-n", &link.ns, "addr", "add", &client_cidr, "dev", &peer],
            &["-n", &link.ns, "link", "set", &peer, "up"],
            &["-n", &link.ns, "link", "set", "lo", "up"],
            // webrtc-rs fails with ENODEV when the namespace has no route for its probes.
            &["-n", &link.ns, "route", "add", "default", "dev", &peer],
        ];
        for step in steps {
            run("ip", step)?;
        }
        Ok(link)
    }

    /// A command run inside the namespace (`ip netns exec <ns> <program>`).
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Host → namespace: at most `kbit` kbit/s, queueing at most 60 ms (replaces any shaping).
    pub fn cap(&self, kbit: u32) -> Result<(), LinkError> {
        let _ = run("tc", &["qdisc", "del", "dev", &self.veth, "root"]);
        let rate = format!("{kbit}kbit");
        run(
            "tc",
            &[
                "qdisc", "add", "dev", &self.veth, "root", "handle", "1:", "tbf", "rate", &rate,
                "burst", "16kb", "latency", "60ms",
            ],
        )
    }

    /// Host → namespace: `loss` per cent random loss, then at most `kbit` kbit/s. Loss comes
    /// from `tc netem` where the kernel has it, else from an nftables rule dropping that share
    /// of the UDP packets arriving in the namespace (kernels without sch_netem). Returns how
    /// the loss is made.
    pub fn shape(&self, loss: u32, kbit: u32) -> Result<&'static str, LinkError> {
        let _ = run("tc", &["qdisc", "del", "dev", &self.veth, "root"]);
        let rate = format!("{kbit}kbit");
        let tbf = ["tbf", "rate", &rate, "burst", "16kb", "latency", "60ms"];
        let percent = format!("{loss}%");
        let netem = run(
            "tc",
            &[
                "qdisc", "add", "dev", &self.veth, "root", "handle", "1:", "netem", "loss",
                &percent,
            ],
        );
        if netem.is_ok() {
            let mut args = vec![
                "qdisc", "add", "dev", &self.veth, "parent", "1:", "handle", "2:",
            ];
            args.extend(tbf);
            run("tc", &args)?;
            return Ok("tc netem");
        }
        self.cap(kbit)?;
        let share = loss.to_string();
        let rules: [&[&str]; 3] = [
            &["add", "table", "inet", "sfloss"],
            &[
                "add",
                "chain",
                "inet",
                "sfloss",
                "input",
                "{ type filter hook input priority 0; }",
            ],
            &[
                "add", "rule", "inet", "sfloss", "input", "meta", "l4proto", "udp", "numgen",
                "random", "mod", "100", "<", &share, "drop",
            ],
        ];
        for rule in rules {
            let mut args = vec!["netns", "exec", &self.ns, "nft"];
            args.extend(rule);
            run("ip", &args)?;
        }
        Ok("nftables numgen (this kernel has no sch_netem)")
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace takes its end of the pair, its qdiscs and its rules with it.
        let _ = run("ip", &["link", "del", &self.veth]);
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}
