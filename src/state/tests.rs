use super::*;
use std::path::Path;

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

fn file_sink(dir: &Path) -> Vec<Destination> {
    vec![Destination {
        sink: "a".into(),
        path: dir.join("out/events.ndjson"),
        // The file sink's format, in short: 8 bytes of length, then the path it measures.
        checkpoint_covers: |c, p| {
            c.len() == 8 || c.get(8..) == Some(p.as_os_str().as_encoded_bytes())
        },
    }]
}

#[test]
fn identity_is_created_with_the_store_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path(), &sinks())
        .unwrap()
        .identity()
        .clone();
    assert_eq!(first.id.len(), 32);
    assert!(first.created.starts_with("20"), "{}", first.created);
    let again = Store::open(dir.path(), &sinks())
        .unwrap()
        .identity()
        .clone();
    assert_eq!(again, first);
    let other = tempfile::tempdir().unwrap();
    let different = Store::open(other.path(), &sinks())
        .unwrap()
        .identity()
        .clone();
    assert_ne!(different.id, first.id);
}

#[test]
fn inspect_tells_missing_empty_present_and_unreadable_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    assert_eq!(inspect(&path).unwrap(), Found::Missing);
    std::fs::write(&path, b"").unwrap();
    assert_eq!(inspect(&path).unwrap(), Found::Empty);
    std::fs::remove_file(&path).unwrap();
    drop(Store::open(dir.path(), &sinks()).unwrap());
    assert_eq!(inspect(&path).unwrap(), Found::Present);
    std::fs::write(&path, b"this is not a database at all").unwrap();
    assert!(matches!(inspect(&path), Err(StateError::Unreadable { .. })));
}

#[test]
fn random_bytes_are_an_unreadable_store_naming_the_file_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    let noise: Vec<u8> = (0..65536).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&path, &noise).unwrap();
    let Err(e) = Store::open(dir.path(), &sinks()) else {
        panic!("random bytes opened as a store");
    };
    let text = e.to_string();
    assert!(matches!(e, StateError::Unreadable { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("move") && text.contains("backup"), "{text}");
    // Nothing was changed.
    assert_eq!(std::fs::read(&path).unwrap(), noise);
}

#[test]
fn a_damaged_store_behind_a_valid_header_is_an_error_or_repaired_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), &sinks()).unwrap();
        let events = (0..200)
            .map(|i| ev(&format!("e{i}"), &"x".repeat(500)))
            .collect();
        let commit = WindowCommit {
            events,
            cursor_ms: Some(1),
            ..Default::default()
        };
        store.commit_window("wiki", &commit).unwrap();
    }
    let path = dir.path().join(STORE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // Keep the magic number, scramble everything after the first header bytes.
    for b in bytes.iter_mut().skip(64) {
        *b = rand::random();
    }
    std::fs::write(&path, &bytes).unwrap();
    match Store::open(dir.path(), &sinks()) {
        Ok(store) => {
            // redb's check repaired it: whatever is left must be readable.
            let _ = store.queue_stats("a");
        }
        Err(e) => assert!(
            matches!(e, StateError::Unreadable { .. }),
            "not a clear error: {e}"
        ),
    }
}

#[test]
fn a_destination_with_content_and_no_checkpoint_refuses_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let dests = file_sink(dir.path());
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(&dests[0].path, "{\"event\":{\"id\":\"x\"}}\n").unwrap();
    let state = dir.path().join("state");
    let Err(StateError::Refused(refusal)) =
        open_checked(&state, &sinks(), &dests, NewState::Refuse)
    else {
        panic!("a file with content was taken over silently");
    };
    assert_eq!(refusal.conflicts.len(), 1, "{refusal}");
    assert!(refusal.conflicts[0].contains("no state store ever checkpointed it"));
    assert!(refusal.to_string().contains("--accept-new-state"));
    // A refusal creates nothing.
    assert_eq!(inspect(&state.join(STORE_FILE)).unwrap(), Found::Missing);
    // Accepted: the destination is claimed by the new store, and the next start is quiet.
    let store = open_checked(&state, &sinks(), &dests, NewState::Accept).unwrap();
    let claimed = std::fs::read_to_string(claim_path(&dests[0].path)).unwrap();
    assert!(claimed.contains(&store.identity().id), "{claimed}");
    drop(store);
    open_checked(&state, &sinks(), &dests, NewState::Refuse).unwrap();
}

#[test]
fn an_emptied_or_replaced_store_is_refused_while_the_same_store_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let dests = file_sink(dir.path());
    let state = dir.path().join("state");
    let first_id = {
        let store = open_checked(&state, &sinks(), &dests, NewState::Refuse).unwrap();
        store.ack("a", &[], &[], Some(&0u64.to_le_bytes())).unwrap();
        store.identity().id.clone()
    };
    std::fs::write(&dests[0].path, "line\n").unwrap();
    // The same store: fine.
    drop(open_checked(&state, &sinks(), &dests, NewState::Refuse).unwrap());

    // Emptied: refused, and the empty file stays as it was.
    let path = state.join(STORE_FILE);
    let saved = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"").unwrap();
    let Err(StateError::Refused(refusal)) =
        open_checked(&state, &sinks(), &dests, NewState::Refuse)
    else {
        panic!("an emptied store started over silently");
    };
    assert!(refusal.store.contains("empty (0 bytes)"), "{refusal}");
    assert!(refusal.conflicts[0].contains(&first_id), "{refusal}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // Replaced by another store: refused, naming both.
    std::fs::remove_file(&path).unwrap();
    let other_id = Store::open(&state, &sinks()).unwrap().identity().id.clone();
    let Err(StateError::Refused(refusal)) =
        open_checked(&state, &sinks(), &dests, NewState::Refuse)
    else {
        panic!("a replaced store started over silently");
    };
    assert!(refusal.store.contains(&other_id), "{refusal}");
    assert!(refusal.conflicts[0].contains(&first_id), "{refusal}");

    // The original put back: fine again.
    std::fs::write(&path, &saved).unwrap();
    drop(open_checked(&state, &sinks(), &dests, NewState::Refuse).unwrap());

    // The output moved away with its claim, the store emptied: a clean start, no flag.
    let aside = dir.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    std::fs::rename(&dests[0].path, aside.join("events.ndjson")).unwrap();
    std::fs::rename(claim_path(&dests[0].path), aside.join("claim")).unwrap();
    std::fs::write(&path, b"").unwrap();
    let store = open_checked(&state, &sinks(), &dests, NewState::Refuse).unwrap();
    assert_ne!(store.identity().id, first_id);
}

#[test]
fn a_store_from_before_claims_keeps_its_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let dests = file_sink(dir.path());
    let state = dir.path().join("state");
    {
        // Written by a version without claims: a checkpoint, no claim file.
        let store = Store::open(&state, &sinks()).unwrap();
        store.ack("a", &[], &[], Some(&5u64.to_le_bytes())).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(&dests[0].path, "line\n").unwrap();
    let store = open_checked(&state, &sinks(), &dests, NewState::Refuse).unwrap();
    assert!(claim_path(&dests[0].path).exists());
    // The sink delivers: its checkpoint now names its file.
    let mut named = 10u64.to_le_bytes().to_vec();
    named.extend_from_slice(dests[0].path.as_os_str().as_encoded_bytes());
    store.ack("a", &[], &[], Some(&named)).unwrap();
    drop(store);
    // The sink's path changed to a file with content: the old checkpoint vouches for nothing.
    let mut moved = dests.clone();
    moved[0].path = dir.path().join("out/other.ndjson");
    std::fs::write(&moved[0].path, "not ours\n").unwrap();
    assert!(matches!(
        open_checked(&state, &sinks(), &moved, NewState::Refuse),
        Err(StateError::Refused(_))
    ));
    let store = open_checked(&state, &sinks(), &dests, NewState::Refuse).unwrap();
    assert!(
        std::fs::read_to_string(claim_path(&dests[0].path))
            .unwrap()
            .contains(&store.identity().id)
    );
}

#[test]
fn a_store_file_deleted_or_replaced_under_an_open_store_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &sinks()).unwrap();
    store.check_file();
    assert_eq!(store.file_watch().lost(), None);
    std::fs::remove_file(store.path()).unwrap();
    store.check_file();
    let reason = store.file_watch().lost().expect("deletion noticed");
    assert!(reason.contains("deleted"), "{reason}");
    // The open store still works: delivery goes on until the daemon stops.
    store.ack("a", &[], &[], Some(b"1")).unwrap();

    let emptied = tempfile::tempdir().unwrap();
    let store = Store::open(emptied.path(), &sinks()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(store.path())
        .unwrap()
        .set_len(0)
        .unwrap();
    store.check_file();
    assert!(store.file_watch().lost().unwrap().contains("emptied"));

    let other = tempfile::tempdir().unwrap();
    let store = Store::open(other.path(), &sinks()).unwrap();
    std::fs::rename(store.path(), other.path().join("moved")).unwrap();
    std::fs::write(store.path(), b"").unwrap();
    store.check_file();
    assert!(store.file_watch().lost().unwrap().contains("replaced"));
}

#[test]
fn a_destination_locked_by_a_running_writer_is_left_to_that_writer() {
    let dir = tempfile::tempdir().unwrap();
    let dests = file_sink(dir.path());
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(&dests[0].path, "another forwarder's line\n").unwrap();
    let holder = std::fs::File::open(&dests[0].path).unwrap();
    holder.lock().unwrap();
    // Not judged here (the sink's lock check names the holder), and not claimed either.
    drop(
        open_checked(
            &dir.path().join("state"),
            &sinks(),
            &dests,
            NewState::Refuse,
        )
        .unwrap(),
    );
    assert!(!claim_path(&dests[0].path).exists());
    drop(holder);
    assert!(matches!(
        open_checked(
            &dir.path().join("state"),
            &sinks(),
            &dests,
            NewState::Refuse
        ),
        Err(StateError::Refused(_))
    ));
}
