//! The hypervisor choice as a table of plain values: OS, features, cost, room, the customer's
//! choice → what runs the instance, the offer, or the refusal.

use streamfleet_bus_schemas::compute::Feature::{self, *};
use streamfleet_bus_schemas::compute::Hypervisor::{self, *};
use streamfleet_bus_schemas::compute::Os::{self, *};
use streamfleet_domain::Rejection;
use streamfleet_domain::hypervisor::{CAPABILITIES, Needs, Offered, choose, supports};

fn region(rows: &[(Hypervisor, u32, bool)]) -> Vec<Offered> {
    rows.iter()
        .map(|&(hypervisor, cost, has_room)| Offered {
            hypervisor,
            cost,
            has_room,
        })
        .collect()
}

/// The usual region: qemu dearer than crun, both with room.
fn usual() -> Vec<Offered> {
    region(&[(Qemu, 12, true), (Crun, 3, true), (Sim, 1, true)])
}

/// What the choice comes to: the hypervisor and the offered one, or the refusal's rule and
/// its offer.
type Outcome = Result<(Hypervisor, Option<Hypervisor>), (&'static str, Option<Hypervisor>)>;

/// Chooses for `os`, `features` and the customer's `requested` among `offered`.
fn outcome(
    os: Os,
    features: &[Feature],
    requested: Option<Hypervisor>,
    offered: &[Offered],
) -> Outcome {
    let needs = Needs {
        os,
        features,
        requested,
    };
    match choose(&needs, offered) {
        Ok(c) => {
            assert!(!c.reasons.is_empty(), "every choice says why");
            Ok((c.hypervisor, c.offer.map(|o| o.hypervisor)))
        }
        Err(r) => {
            let offer = match &r {
                Rejection::HypervisorUnfit { offer, .. } => Some(offer.hypervisor),
                _ => None,
            };
            Err((r.rule(), offer))
        }
    }
}

/// A row of the table: name, OS, features, the customer's choice, the region, the outcome.
type Case<'a> = (
    &'a str,
    Os,
    &'a [Feature],
    Option<Hypervisor>,
    &'a [Offered],
    Outcome,
);

#[test]
fn the_choice_follows_os_features_cost_room_and_the_customer() {
    let sim_out = region(&[(Qemu, 12, true), (Crun, 3, true)]);
    let crun_full = region(&[(Qemu, 12, true), (Crun, 3, false)]);
    let no_qemu = region(&[(Crun, 3, true)]);
    let usual = usual();
    let qemu_full = region(&[(Qemu, 12, false), (Crun, 3, true)]);
    let tie = region(&[(Crun, 5, true), (Qemu, 5, true)]);
    let cases: Vec<Case> = vec![
        (
            "cheapest that runs linux",
            Linux,
            &[],
            None,
            &sim_out,
            Ok((Crun, None)),
        ),
        (
            "sim is cheapest of all",
            Linux,
            &[],
            None,
            &usual,
            Ok((Sim, None)),
        ),
        (
            "windows needs a vm",
            Windows,
            &[],
            None,
            &usual,
            Ok((Qemu, None)),
        ),
        (
            "snapshot needs qemu",
            Linux,
            &[Snapshot],
            None,
            &usual,
            Ok((Qemu, None)),
        ),
        (
            "hot volumes need qemu",
            Linux,
            &[HotAttachVolume],
            None,
            &usual,
            Ok((Qemu, None)),
        ),
        (
            "hot networks: crun can",
            Linux,
            &[HotAttachNetwork],
            None,
            &sim_out,
            Ok((Crun, None)),
        ),
        (
            "no room on crun",
            Linux,
            &[],
            None,
            &crun_full,
            Ok((Qemu, None)),
        ),
        (
            "customer's qemu, crun cheaper: offered",
            Linux,
            &[],
            Some(Qemu),
            &sim_out,
            Ok((Qemu, Some(Crun))),
        ),
        (
            "customer's crun is the cheapest: no offer",
            Linux,
            &[],
            Some(Crun),
            &sim_out,
            Ok((Crun, None)),
        ),
        (
            "customer's crun cannot snapshot",
            Linux,
            &[Snapshot],
            Some(Crun),
            &usual,
            Err(("hypervisor_unfit", Some(Qemu))),
        ),
        (
            "customer's crun cannot run windows",
            Windows,
            &[],
            Some(Crun),
            &usual,
            Err(("hypervisor_unfit", Some(Qemu))),
        ),
        (
            "customer's crun has no room",
            Linux,
            &[],
            Some(Crun),
            &crun_full,
            Err(("hypervisor_unfit", Some(Qemu))),
        ),
        (
            "customer's qemu not offered here",
            Linux,
            &[],
            Some(Qemu),
            &no_qemu,
            Err(("hypervisor_unfit", Some(Crun))),
        ),
        (
            "windows where only crun is offered",
            Windows,
            &[],
            None,
            &no_qemu,
            Err(("no_hypervisor", None)),
        ),
        (
            "snapshot with qemu full",
            Linux,
            &[Snapshot],
            None,
            &qemu_full,
            Err(("no_hypervisor", None)),
        ),
        (
            "an empty region",
            Linux,
            &[],
            None,
            &[],
            Err(("no_hypervisor", None)),
        ),
        (
            "ties go in table order",
            Linux,
            &[],
            None,
            &tie,
            Ok((Qemu, None)),
        ),
    ];
    for (name, os, features, requested, offered, expected) in cases {
        assert_eq!(
            outcome(os, features, requested, offered),
            expected,
            "{name}"
        );
    }
}

#[test]
fn a_refusal_names_why_and_what_is_offered() {
    let needs = Needs {
        os: Linux,
        features: &[Snapshot],
        requested: Some(Crun),
    };
    let refusal = choose(&needs, &usual()).expect_err("crun cannot snapshot");
    let text = refusal.to_string();
    assert!(
        text.contains("crun cannot do snapshot") && text.contains("offered: qemu"),
        "{text}"
    );
    let needs = Needs {
        os: Linux,
        features: &[],
        requested: Some(Qemu),
    };
    let choice = choose(&needs, &usual()).expect("qemu fits");
    let offer = choice.offer.expect("sim is cheaper");
    assert_eq!((offer.hypervisor, offer.cost), (Sim, 1));
    assert!(offer.reason.starts_with("cheaper"), "{}", offer.reason);
}

#[test]
fn the_capability_table_has_one_row_per_hypervisor_and_says_what_crun_cannot() {
    for h in Hypervisor::ALL {
        assert_eq!(
            CAPABILITIES.iter().filter(|c| c.hypervisor == h).count(),
            1,
            "{h}"
        );
    }
    assert!(Feature::ALL.iter().all(|f| supports(Qemu, *f)));
    assert!(!supports(Crun, Snapshot));
    assert!(!supports(Crun, HotAttachVolume));
    assert!(supports(Crun, HotAttachNetwork));
    assert!(!supports(Sim, HotAttachVolume));
}

/// The README's table is the code's: each row's runs/can columns come from [`CAPABILITIES`].
#[test]
fn the_readme_shows_the_capability_table_as_declared() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    for caps in CAPABILITIES {
        let os: Vec<String> = caps.os.iter().map(|o| o.to_string()).collect();
        let features: Vec<String> = caps
            .features
            .iter()
            .map(|f| match f {
                Feature::StopStart => "stop/start".to_string(),
                other => other.name().replace('_', " "),
            })
            .collect();
        let row = format!(
            "| `{}` | {} | {} | {} |",
            caps.hypervisor,
            os.join(", "),
            features.join(", "),
            caps.notes
        );
        assert!(readme.contains(&row), "README lacks the row {row}");
    }
}

/// Every image of the catalogue names hypervisors that run its OS, by the capability table.
#[test]
fn each_image_is_run_by_the_hypervisors_it_names() {
    use streamfleet_domain::hypervisor::capabilities;
    use streamfleet_domain::image::{CATALOGUE, image};
    for i in CATALOGUE {
        assert!(!i.hypervisors.is_empty(), "{}", i.name);
        for h in i.hypervisors {
            assert!(capabilities(*h).os.contains(&i.os), "{} on {h}", i.name);
        }
        assert_eq!(image(i.name), Some(&i));
    }
    assert_eq!(image("no-such-image"), None);
}
