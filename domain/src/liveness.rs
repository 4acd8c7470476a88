//! The liveness detector: from the probe results the hosts publish, which nodes stopped
//! answering, answer again, or are failed.
//!
//! Invariant: a node is judged only by the detector's own clock (when a probe result arrived,
//! when it looks), never by a host's; a verdict is given once per silence (`Unresponsive` once,
//! then `Answering` or `Failed` once), and a node judged failed is not judged again until it is
//! watched anew (served again). Silence from a whole host — no results at all — counts like
//! failed probes: its nodes go unanswered.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use streamfleet_bus_schemas::dfs::Liveness;
use streamfleet_bus_schemas::ids::NodeId;

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The node.
    pub node_id: NodeId,
    /// Its placement.
    pub generation: u32,
    /// The verdict.
    pub liveness: Liveness,
    /// When it last answered.
    pub last_answer_at: DateTime<Utc>,
    /// What the probes saw.
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Watch {
    generation: u32,
    last_answer: DateTime<Utc>,
    /// The last failed probe's words, and when (none since the last answer: silence).
    last_miss: Option<(DateTime<Utc>, String)>,
    unresponsive: bool,
    /// Extra time allowed now (a checkpoint's clean restart).
    grace_until: Option<DateTime<Utc>>,
}

/// The detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detector {
    /// Silence after which a node is failed, ms.
    pub timeout_ms: u64,
    /// Silence after which it is unresponsive, ms.
    pub suspect_ms: u64,
    watched: BTreeMap<NodeId, Watch>,
}

impl Detector {
    /// A detector that fails a node after `timeout_ms` of silence (unresponsive after a third
    /// of it, at least one probe interval of `probe_ms`).
    pub fn new(timeout_ms: u64, probe_ms: u64) -> Detector {
        Detector {
            timeout_ms,
            suspect_ms: (timeout_ms / 3).max(probe_ms * 2).min(timeout_ms),
            watched: BTreeMap::new(),
        }
    }

    /// Watches placement `generation` of `node_id` from `now` (it serves).
    pub fn watch(&mut self, node_id: &NodeId, generation: u32, now: DateTime<Utc>) {
        self.watched.insert(
            node_id.clone(),
            Watch {
                generation,
                last_answer: now,
                last_miss: None,
                unresponsive: false,
                grace_until: None,
            },
        );
    }

    /// Stops watching `node_id` (failed, or being recovered).
    pub fn unwatch(&mut self, node_id: &NodeId) {
        self.watched.remove(node_id);
    }

    /// Gives `node_id` until `until` before it can be failed (a clean restart).
    pub fn grace(&mut self, node_id: &NodeId, until: DateTime<Utc>) {
        if let Some(w) = self.watched.get_mut(node_id) {
            w.grace_until = Some(until);
        }
    }

    /// Whether `node_id` is watched, and its placement.
    pub fn watching(&self, node_id: &NodeId) -> Option<u32> {
        self.watched.get(node_id).map(|w| w.generation)
    }

    /// A probe result for placement `generation` of `node_id` at `now`: the `Answering` verdict
    /// when it answers after it was said unresponsive.
    pub fn probe(
        &mut self,
        node_id: &NodeId,
        generation: u32,
        answered: bool,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Option<Verdict> {
        let w = self.watched.get_mut(node_id)?;
        if w.generation != generation {
            return None;
        }
        if !answered {
            w.last_miss = Some((now, detail.to_string()));
            return None;
        }
        let was_silent = w.unresponsive;
        let last = w.last_answer;
        w.last_answer = now;
        w.last_miss = None;
        w.unresponsive = false;
        was_silent.then(|| Verdict {
            node_id: node_id.clone(),
            generation,
            liveness: Liveness::Answering,
            last_answer_at: last,
            evidence: format!("answers again: {detail}"),
        })
    }

    /// The verdicts due at `now`: `Unresponsive` once past the suspicion, `Failed` once past the
    /// timeout (the node is then no longer watched).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let mut failed = Vec::new();
        for (id, w) in &mut self.watched {
            let silent = (now - w.last_answer).num_milliseconds().max(0) as u64;
            let evidence = match &w.last_miss {
                Some((at, detail)) => format!(
                    "last probe {} ms ago: {detail}",
                    (now - *at).num_milliseconds().max(0)
                ),
                None => format!("no probe result from its host for {silent} ms"),
            };
            let graced = w.grace_until.is_some_and(|g| now < g);
            if silent >= self.timeout_ms && !graced {
                verdicts.push(Verdict {
                    node_id: id.clone(),
                    generation: w.generation,
                    liveness: Liveness::Failed,
                    last_answer_at: w.last_answer,
                    evidence,
                });
                failed.push(id.clone());
            } else if silent >= self.suspect_ms && !w.unresponsive {
                w.unresponsive = true;
                verdicts.push(Verdict {
                    node_id: id.clone(),
                    generation: w.generation,
                    liveness: Liveness::Unresponsive,
                    last_answer_at: w.last_answer,
                    evidence,
                });
            }
        }
        for id in failed {
            self.watched.remove(&id);
        }
        verdicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap() + Duration::milliseconds(ms)
    }

    fn kinds(v: &[Verdict]) -> Vec<Liveness> {
        v.iter().map(|v| v.liveness).collect()
    }

    #[test]
    fn a_silent_node_is_unresponsive_then_failed_once() {
        let n: NodeId = "fs-master".into();
        let mut d = Detector::new(2000, 200);
        d.watch(&n, 0, t(0));
        assert!(d.probe(&n, 0, true, "ok", t(200)).is_none());
        assert!(d.tick(t(800)).is_empty());
        d.probe(&n, 0, false, "connection refused", t(900));
        let v = d.tick(t(900));
        assert_eq!(kinds(&v), [Liveness::Unresponsive]);
        assert_eq!(v[0].last_answer_at, t(200));
        assert!(d.tick(t(1500)).is_empty(), "said once");
        let v = d.tick(t(2200));
        assert_eq!(kinds(&v), [Liveness::Failed]);
        assert!(
            v[0].evidence.contains("connection refused"),
            "{}",
            v[0].evidence
        );
        assert!(d.tick(t(9000)).is_empty(), "failed once, then not watched");
        assert_eq!(d.watching(&n), None);
    }

    #[test]
    fn a_node_that_answers_before_the_timeout_is_not_failed() {
        let n: NodeId = "fs-master".into();
        let mut d = Detector::new(2000, 200);
        d.watch(&n, 0, t(0));
        d.probe(&n, 0, false, "timed out", t(700));
        assert_eq!(kinds(&d.tick(t(700))), [Liveness::Unresponsive]);
        let back = d.probe(&n, 0, true, "ok", t(1900)).expect("answering");
        assert_eq!(back.liveness, Liveness::Answering);
        assert_eq!(back.last_answer_at, t(0));
        assert!(d.tick(t(2100)).is_empty(), "the flap is forgiven");
        assert!(
            !kinds(&d.tick(t(3800))).contains(&Liveness::Failed),
            "timed from the new answer"
        );
        assert_eq!(kinds(&d.tick(t(3901))), [Liveness::Failed]);
    }

    #[test]
    fn a_silent_host_fails_its_nodes_with_that_evidence() {
        let (a, b): (NodeId, NodeId) = ("fs-master".into(), "fs-cs1".into());
        let mut d = Detector::new(1000, 100);
        d.watch(&a, 3, t(0));
        d.watch(&b, 0, t(0));
        let v = d.tick(t(1000));
        assert_eq!(kinds(&v), [Liveness::Failed, Liveness::Failed]);
        assert!(
            v[0].evidence.contains("no probe result"),
            "{}",
            v[0].evidence
        );
        assert_eq!(v.iter().find(|v| v.node_id == a).unwrap().generation, 3);
    }

    #[test]
    fn results_for_another_placement_are_ignored_and_grace_holds_off_the_failure() {
        let n: NodeId = "fs-master".into();
        let mut d = Detector::new(1000, 100);
        d.watch(&n, 2, t(0));
        assert!(d.probe(&n, 1, true, "old placement", t(900)).is_none());
        d.grace(&n, t(5000));
        assert_eq!(kinds(&d.tick(t(1200))), [Liveness::Unresponsive]);
        assert!(d.tick(t(4000)).is_empty());
        assert_eq!(kinds(&d.tick(t(5000))), [Liveness::Failed]);
    }
}
