//! Stored views: resuming across a close/reopen gives exactly the bytes of a one-pass rebuild,
//! and an altered row shows up in the diff by view, table and key.

mod common;

use common::history;
use streamfleet_projections::store::{CHECKPOINT_KEY, Store, dump, view_path};
use streamfleet_projections::views::{View, ViewSet};
use streamfleet_projections::{EventFeed, diff, rebuild_from};

/// Applies positions `from..=to` of the history to `views` and stores them in `store`.
fn apply_and_store(store: &Store, views: &mut ViewSet, from: usize, to: usize, durable: bool) {
    for (i, (time, event)) in history().into_iter().enumerate() {
        let position = i + 1;
        if (from..=to).contains(&position) {
            views.apply(position as u64, time, Some(&event));
        }
    }
    store.write(&views.take_batches(), durable).expect("stored");
}

#[test]
fn two_halves_across_a_reopen_equal_one_pass() {
    let (halves, once) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let n = history().len();
    {
        let (store, mut views) = Store::open(halves.path()).expect("open");
        assert_eq!(views.position(), 0);
        apply_and_store(&store, &mut views, 1, 9, false);
        apply_and_store(&store, &mut views, 10, 11, true);
    }
    {
        let (store, mut views) = Store::open(halves.path()).expect("reopen");
        assert_eq!(views.position(), 11, "resumes after the checkpoint");
        // Re-applying events the views already hold changes nothing.
        apply_and_store(&store, &mut views, 1, n, true);
    }
    {
        let (store, mut views) = Store::open(once.path()).expect("open");
        apply_and_store(&store, &mut views, 1, n, true);
    }
    for view in streamfleet_projections::views::VIEW_NAMES {
        let a = dump(&view_path(halves.path(), view)).expect("dump");
        let b = dump(&view_path(once.path(), view)).expect("dump");
        assert!(a.len() > 1, "{view} holds rows");
        assert_eq!(a, b, "{view} differs");
        let checkpoint = a
            .iter()
            .find(|r| r.key == CHECKPOINT_KEY)
            .expect("checkpoint");
        assert_eq!(checkpoint.bytes, (n as u64).to_be_bytes());
    }
    assert_eq!(diff(halves.path(), once.path()).expect("diff"), vec![]);
}

#[test]
fn resuming_anywhere_in_the_instances_lives_equals_one_pass() {
    let n = history().len();
    let once = tempfile::tempdir().expect("dir");
    {
        let (store, mut views) = Store::open(once.path()).expect("open");
        apply_and_store(&store, &mut views, 1, n, true);
    }
    // Positions 20..: the compute hosts, instances, migrations and file systems; every split
    // point, host counters, migration steps and nodes' recoveries included, resumes to the same
    // bytes.
    for split in 20..n {
        let halves = tempfile::tempdir().expect("dir");
        {
            let (store, mut views) = Store::open(halves.path()).expect("open");
            apply_and_store(&store, &mut views, 1, split, true);
        }
        let (store, mut views) = Store::open(halves.path()).expect("reopen");
        assert_eq!(views.position(), split as u64);
        apply_and_store(&store, &mut views, split + 1, n, true);
        drop(store);
        let view = streamfleet_projections::views::InstancesView::NAME;
        let a = dump(&view_path(halves.path(), view)).expect("dump");
        assert!(a.iter().any(|r| r.table == "compute_hosts"));
        assert!(a.iter().any(|r| r.table == "instances"));
        let m = dump(&view_path(
            halves.path(),
            streamfleet_projections::views::MigrationsView::NAME,
        ))
        .expect("dump");
        assert!(m.iter().any(|r| r.table == "migrations"));
        let nodes = dump(&view_path(
            halves.path(),
            streamfleet_projections::views::NodesView::NAME,
        ))
        .expect("dump");
        assert!(nodes.iter().any(|r| r.table == "nodes"));
        assert!(nodes.iter().any(|r| r.table == "file_systems"));
        assert_eq!(
            diff(halves.path(), once.path()).expect("diff"),
            vec![],
            "resumed after {split}"
        );
    }
}

#[test]
fn an_altered_row_is_named_by_the_diff() {
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let n = history().len();
    for dir in [&a, &b] {
        let (store, mut views) = Store::open(dir.path()).expect("open");
        apply_and_store(&store, &mut views, 1, n, true);
    }
    {
        // Alter b's row of h3 in the hosts view.
        let (store, mut views) = Store::open(b.path()).expect("open");
        let mut changed = views.take_batches();
        assert!(changed.is_empty(), "nothing changed by opening");
        let mut row = views.hosts.view.hosts.get("h3").cloned().expect("h3");
        row.capacity = 99;
        changed.push(streamfleet_projections::views::ViewBatch {
            view: "hosts",
            position: n as u64,
            changes: vec![streamfleet_projections::rows::RowChange {
                table: "hosts",
                key: "h3".into(),
                bytes: Some(prost::Message::encode_to_vec(&row)),
            }],
        });
        store.write(&changed, true).expect("stored");
    }
    let differences = diff(a.path(), b.path()).expect("diff");
    assert_eq!(differences.len(), 1, "{differences:?}");
    let d = &differences[0];
    assert_eq!(
        (d.view.as_str(), d.table.as_str(), d.key.as_str()),
        ("hosts", "hosts", "h3")
    );
    assert!(
        d.b.as_deref().is_some_and(|b| b.contains("capacity: 99")),
        "{d}"
    );
    assert!(d.to_string().starts_with("hosts/hosts/h3: "));
}

#[tokio::test]
async fn rebuild_from_a_feed_stops_at_the_position_asked() {
    let (dir, reference) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (sender, feed) = EventFeed::channel(64);
    let events = history();
    let feeding = tokio::spawn(async move {
        for (i, (time, event)) in events.into_iter().enumerate() {
            if sender.send(i as u64 + 1, time, event).await.is_err() {
                break;
            }
        }
    });
    let position = rebuild_from(feed, dir.path(), 12).await.expect("rebuilt");
    assert_eq!(position, 12);
    feeding.abort();
    let (store, mut views) = Store::open(reference.path()).expect("open");
    apply_and_store(&store, &mut views, 1, 12, true);
    drop(store);
    assert_eq!(diff(dir.path(), reference.path()).expect("diff"), vec![]);
}
