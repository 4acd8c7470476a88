//! Which hypervisor runs an instance (seed 002): the capability table every driver declares,
//! and the choice from the image's OS, the requested features, each hypervisor's cost in the
//! region and whether it has room there.
//!
//! Invariant: the choice is a pure function of its arguments. The customer's named hypervisor is
//! used whenever it can run the instance; when the service would choose another (cheaper), the
//! choice carries an offer; when the customer's cannot (wrong OS, a feature it lacks, no room,
//! not offered in the region) the command is refused naming why and what the service offers
//! instead. Every choice says why in words.

use crate::Rejection;
use streamfleet_bus_schemas::compute::{Feature, Hypervisor, HypervisorOffer, Os};

/// What one hypervisor can do, as its driver declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The hypervisor.
    pub hypervisor: Hypervisor,
    /// The operating systems it runs.
    pub os: &'static [Os],
    /// What it can do while an instance runs.
    pub features: &'static [Feature],
    /// What it cannot promise, in words (shown beside the table).
    pub notes: &'static str,
}

/// The capability table: one row per hypervisor.
pub const CAPABILITIES: [Capabilities; 3] = [
    Capabilities {
        hypervisor: Hypervisor::Qemu,
        os: &[Os::Linux, Os::Windows],
        features: &[
            Feature::HotAttachVolume,
            Feature::HotAttachNetwork,
            Feature::Snapshot,
            Feature::Reboot,
            Feature::StopStart,
            Feature::Migrate,
        ],
        notes: "TCG unless a KVM probe guest boots; migration carries the disks' contents, not their snapshots",
    },
    Capabilities {
        hypervisor: Hypervisor::Crun,
        os: &[Os::Linux],
        features: &[
            Feature::HotAttachNetwork,
            Feature::Reboot,
            Feature::StopStart,
        ],
        notes: "no snapshot (no CRIU); volumes only at create; no cgroup limits on hybrid-cgroup hosts",
    },
    Capabilities {
        hypervisor: Hypervisor::Sim,
        os: &[Os::Linux],
        features: &[Feature::Reboot, Feature::StopStart],
        notes: "simulated in the host agent: no disks, no interfaces",
    },
];

/// The row of `hypervisor`.
pub fn capabilities(hypervisor: Hypervisor) -> &'static Capabilities {
    CAPABILITIES
        .iter()
        .find(|c| c.hypervisor == hypervisor)
        .unwrap_or(&CAPABILITIES[0])
}

/// Whether `hypervisor` can do `feature`.
pub fn supports(hypervisor: Hypervisor, feature: Feature) -> bool {
    capabilities(hypervisor).features.contains(&feature)
}

/// One hypervisor as a region offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// The hypervisor.
    pub hypervisor: Hypervisor,
    /// Its configured cost per instance-hour in the region.
    pub cost: u32,
    /// Whether a host of it in the region has the cpus and memory asked for.
    pub has_room: bool,
}

/// What the instance needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs<'a> {
    /// The image's operating system.
    pub os: Os,
    /// The features asked for.
    pub features: &'a [Feature],
    /// The customer's choice, if any.
    pub requested: Option<Hypervisor>,
}

/// The hypervisor chosen, why, and the service's offer when it would have chosen another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The hypervisor that runs the instance.
    pub hypervisor: Hypervisor,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// The service's own, cheaper choice when the customer named another.
    pub offer: Option<HypervisorOffer>,
}

/// Why `option` cannot run an instance that `needs` (none: it can).
fn unfit(option: &Offered, needs: &Needs) -> Option<String> {
    let caps = capabilities(option.hypervisor);
    if !caps.os.contains(&needs.os) {
        return Some(format!("{} does not run {}", option.hypervisor, needs.os));
    }
    let missing: Vec<&str> = needs
        .features
        .iter()
        .filter(|f| !caps.features.contains(f))
        .map(|f| f.name())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "{} cannot do {}",
            option.hypervisor,
            missing.join(", ")
        ));
    }
    if !option.has_room {
        return Some(format!("{} has no room in the region", option.hypervisor));
    }
    None
}

/// Chooses the hypervisor for an instance among what the region offers (see the module's
/// invariant): the cheapest fit, or the customer's when it fits.
///
/// ```
/// use streamfleet_bus_schemas::compute::{Feature, Hypervisor, Os};
/// use streamfleet_domain::hypervisor::{Needs, Offered, choose};
/// let region = [
///     Offered { hypervisor: Hypervisor::Qemu, cost: 12, has_room: true },
///     Offered { hypervisor: Hypervisor::Crun, cost: 3, has_room: true },
/// ];
/// let any = Needs { os: Os::Linux, features: &[], requested: None };
/// assert_eq!(choose(&any, &region).unwrap().hypervisor, Hypervisor::Crun);
/// let snapshots = Needs { os: Os::Linux, features: &[Feature::Snapshot], requested: None };
/// assert_eq!(choose(&snapshots, &region).unwrap().hypervisor, Hypervisor::Qemu);
/// ```
pub fn choose(needs: &Needs, region: &[Offered]) -> Result<Choice, Rejection> {
    let mut fits: Vec<&Offered> = region
        .iter()
        .filter(|o| unfit(o, needs).is_none())
        .collect();
    // Cheapest first; ties in the table's order.
    fits.sort_by_key(|o| {
        (
            o.cost,
            Hypervisor::ALL.iter().position(|h| *h == o.hypervisor),
        )
    });
    let why_not = |h: Hypervisor| match region.iter().find(|o| o.hypervisor == h) {
        Some(o) => unfit(o, needs).unwrap_or_default(),
        None => format!("{h} is not offered in the region"),
    };
    let Some(best) = fits.first().copied() else {
        let reasons: Vec<String> = region.iter().filter_map(|o| unfit(o, needs)).collect();
        return Err(Rejection::NoHypervisor {
            detail: if reasons.is_empty() {
                "the region offers no hypervisor".into()
            } else {
                reasons.join("; ")
            },
        });
    };
    let offer_of = |o: &Offered, reason: String| HypervisorOffer {
        hypervisor: o.hypervisor,
        reason,
        cost: o.cost,
    };
    let needed = if needs.features.is_empty() {
        needs.os.to_string()
    } else {
        let names: Vec<&str> = needs.features.iter().map(|f| f.name()).collect();
        format!("{} with {}", needs.os, names.join(", "))
    };
    match needs.requested {
        None => {
            let mut reasons = vec![format!(
                "{} is the cheapest that runs {needed} with room ({} per hour)",
                best.hypervisor, best.cost
            )];
            reasons.extend(
                region
                    .iter()
                    .filter(|o| o.hypervisor != best.hypervisor)
                    .map(|o| match unfit(o, needs) {
                        Some(why) => why,
                        None => format!("{} costs {}", o.hypervisor, o.cost),
                    }),
            );
            Ok(Choice {
                hypervisor: best.hypervisor,
                reasons,
                offer: None,
            })
        }
        Some(requested) => match fits.iter().find(|o| o.hypervisor == requested) {
            Some(mine) => {
                let mut reasons = vec![format!("{requested} as the customer asked")];
                let offer = (best.cost < mine.cost).then(|| {
                    let reason = format!(
                        "cheaper: {} at {} per hour against {} at {}",
                        best.hypervisor, best.cost, requested, mine.cost
                    );
                    reasons.push(format!("offered {}", reason));
                    offer_of(best, reason)
                });
                Ok(Choice {
                    hypervisor: requested,
                    reasons,
                    offer,
                })
            }
            None => {
                let why = why_not(requested);
                Err(Rejection::HypervisorUnfit {
                    requested,
                    why: why.clone(),
                    offer: offer_of(best, format!("{} runs {needed}: {why}", best.hypervisor)),
                })
            }
        },
    }
}
