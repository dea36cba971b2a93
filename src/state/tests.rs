use super::*;

fn ev(id: &str, doc: &str) -> NewEvent {
    NewEvent {
        id: id.into(),
        doc: doc.as_bytes().to_vec(),
    }
}

fn sinks() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

#[test]
fn window_commit_fans_out_and_moves_cursor_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &sinks()).unwrap();
    let mut seen = HashMap::new();
    seen.insert((100, ContentHash([1; 16])), 2);
    store
        .commit_window(
            "wiki",
            &WindowCommit {
                events: vec![ev("e1", "{\"n\":1}"), ev("e2", "{\"n\":2}")],
                seen,
                cursor_ms: Some(200),
                prune_seen_before_ms: i64::MIN,
            },
        )
        .unwrap();
    assert_eq!(store.cursor("wiki").unwrap().unwrap().cursor_ms, 200);
    for sink in ["a", "b"] {
        let got = store.peek(sink, None, 10, 1 << 20).unwrap();
        assert_eq!(
            got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["e1", "e2"]
        );
        assert_eq!(got[1].doc, b"{\"n\":2}");
        let st = store.queue_stats(sink).unwrap();
        assert_eq!(st.events, 2);
    }
    assert_eq!(
        store.seen_counts("wiki", 0, 1000).unwrap()[&(100, ContentHash([1; 16]))],
        2
    );
}

#[test]
fn ack_deletes_dead_letters_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), &sinks()).unwrap();
        store
            .commit_window(
                "wiki",
                &WindowCommit {
                    events: vec![ev("e1", "x"), ev("e2", "yy"), ev("e3", "zzz")],
                    cursor_ms: Some(5),
                    ..Default::default()
                },
            )
            .unwrap();
        let batch = store.peek("a", None, 10, 1 << 20).unwrap();
        store
            .ack(
                "a",
                &[batch[0].seq],
                &[(batch[1].seq, "mapping error".into())],
                Some(b"42"),
            )
            .unwrap();
    }
    let store = Store::open(dir.path(), &sinks()).unwrap();
    let left = store.peek("a", None, 10, 1 << 20).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, "e3");
    let st = store.queue_stats("a").unwrap();
    assert_eq!((st.events, st.bytes, st.dead_letters), (1, 14, 1));
    assert_eq!(store.checkpoint("a").unwrap().as_deref(), Some(&b"42"[..]));
    // The other sink is untouched.
    assert_eq!(store.queue_stats("b").unwrap().events, 3);
    let dl = store.dead_letters("a").unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(
        (dl[0].id.as_str(), dl[0].reason.as_str(), dl[0].doc.as_str()),
        ("e2", "mapping error", "yy")
    );
    assert_eq!(store.replay_dead_letters("a").unwrap(), 1);
    let again: Vec<String> = store
        .peek("a", None, 10, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(again, ["e3", "e2"]);
    assert_eq!(store.queue_stats("a").unwrap().dead_letters, 0);
}

#[test]
fn peek_respects_limits_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &sinks()).unwrap();
    let events: Vec<NewEvent> = (0..10)
        .map(|i| ev(&format!("e{i}"), "0123456789"))
        .collect();
    store
        .commit_window(
            "s",
            &WindowCommit {
                events,
                cursor_ms: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    let first = store.peek("a", None, 3, 1 << 20).unwrap();
    assert_eq!(first.len(), 3);
    let next = store.peek("a", Some(first[2].seq), 100, 50).unwrap();
    // 50 bytes fit two 21-byte entries.
    assert_eq!(next.len(), 2);
    assert_eq!(next[0].id, "e3");
    // A single entry larger than max_bytes still comes out, alone.
    assert_eq!(store.peek("a", None, 100, 1).unwrap().len(), 1);
}

#[test]
fn seen_counts_are_pruned_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &sinks()).unwrap();
    let mut seen = HashMap::new();
    seen.insert((10, ContentHash([1; 16])), 1);
    seen.insert((20, ContentHash([2; 16])), 1);
    store
        .commit_window(
            "x",
            &WindowCommit {
                seen: seen.clone(),
                cursor_ms: Some(20),
                ..Default::default()
            },
        )
        .unwrap();
    store
        .commit_window(
            "y",
            &WindowCommit {
                seen,
                cursor_ms: Some(20),
                ..Default::default()
            },
        )
        .unwrap();
    store
        .commit_window(
            "x",
            &WindowCommit {
                cursor_ms: Some(30),
                prune_seen_before_ms: 15,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(store.seen_counts("x", 0, 100).unwrap().len(), 1);
    assert_eq!(store.seen_counts("y", 0, 100).unwrap().len(), 2);
}

#[test]
fn group_commit_is_durable_on_schedule_on_sync_on_checkpoints_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let window = |id: &str, cursor_ms: i64| WindowCommit {
        events: vec![ev(id, "{}")],
        cursor_ms: Some(cursor_ms),
        ..Default::default()
    };
    {
        let store = Store::open(dir.path(), &sinks()).unwrap();
        let pending = |s: &Store| s.lock_sync().pending();
        // Just opened: the next hot commit waits for the group.
        store.commit_window("wiki", &window("e1", 1)).unwrap();
        assert!(pending(&store));
        // Visible to readers at once, durable or not.
        assert_eq!(store.peek("a", None, 10, 1 << 20).unwrap().len(), 1);
        // A sink's starting checkpoint is never left pending.
        store.ack("a", &[], &[], Some(b"0")).unwrap();
        assert!(!pending(&store));
        store.commit_window("wiki", &window("e2", 2)).unwrap();
        assert!(pending(&store));
        store.sync().unwrap();
        assert!(!pending(&store));
        // Once the last durable commit is old enough, a hot commit is durable by itself.
        std::thread::sleep(SYNC_EVERY + Duration::from_millis(20));
        store.commit_window("wiki", &window("e3", 3)).unwrap();
        assert!(!pending(&store));
        store.commit_window("wiki", &window("e4", 4)).unwrap();
        assert!(pending(&store));
        // Closed with e4 pending: closing persists it.
    }
    let store = Store::open(dir.path(), &sinks()).unwrap();
    assert_eq!(store.cursor("wiki").unwrap().unwrap().cursor_ms, 4);
    let ids: Vec<String> = store
        .peek("b", None, 10, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["e1", "e2", "e3", "e4"]);
    assert_eq!(store.checkpoint("a").unwrap().as_deref(), Some(&b"0"[..]));
}

#[test]
fn the_cursor_never_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &sinks()).unwrap();
    let at = |ms: i64| WindowCommit {
        cursor_ms: Some(ms),
        ..Default::default()
    };
    store.commit_window("wiki", &at(1_000_000)).unwrap();
    // The first slice of the next window ends inside the overlap, before the cursor.
    store.commit_window("wiki", &at(900_000)).unwrap();
    assert_eq!(store.cursor("wiki").unwrap().unwrap().cursor_ms, 1_000_000);
    store.commit_window("wiki", &at(1_100_000)).unwrap();
    assert_eq!(store.cursor("wiki").unwrap().unwrap().cursor_ms, 1_100_000);
}
