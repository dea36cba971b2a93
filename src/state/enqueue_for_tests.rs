//! [`Store::enqueue_for`] (replay): queues for the chosen sinks only, after what they hold,
//! and leaves cursors and seen-counts exactly as they were.

use super::*;

fn ev(id: &str) -> NewEvent {
    NewEvent {
        id: id.into(),
        doc: format!("{{\"id\":\"{id}\"}}").into_bytes(),
    }
}

fn ids(store: &Store, sink: &str) -> Vec<String> {
    let queued = store.peek(sink, None, 100, 1 << 20).unwrap();
    queued.into_iter().map(|e| e.id).collect()
}

#[test]
fn queues_for_the_chosen_sinks_only_and_touches_no_cursor_or_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &["a".into(), "b".into()]).unwrap();
    let mut seen = HashMap::new();
    seen.insert((100, ContentHash([7; 16])), 1);
    store
        .commit_window(
            "wiki",
            &WindowCommit {
                events: vec![ev("e1")],
                seen,
                cursor_ms: Some(200),
                prune_seen_before_ms: i64::MIN,
            },
        )
        .unwrap();
    let cursor = store.cursor("wiki").unwrap();
    let counts = store.seen_counts("wiki", i64::MIN, i64::MAX).unwrap();

    store
        .enqueue_for(&["b".into()], &[ev("e1"), ev("e0")])
        .unwrap();

    assert_eq!(ids(&store, "a"), ["e1"]);
    assert_eq!(ids(&store, "b"), ["e1", "e1", "e0"]);
    assert_eq!(store.queue_stats("b").unwrap().events, 3);
    assert_eq!(store.cursor("wiki").unwrap(), cursor);
    assert_eq!(
        store.seen_counts("wiki", i64::MIN, i64::MAX).unwrap(),
        counts
    );
}

#[test]
fn an_unknown_sink_is_refused_naming_the_configured_ones_and_nothing_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &["a".into(), "b".into()]).unwrap();
    let e = store
        .enqueue_for(&["a".into(), "c".into()], &[ev("e1")])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no sink named \"c\" (configured sinks: a, b)"
    );
    assert!(ids(&store, "a").is_empty());
}
