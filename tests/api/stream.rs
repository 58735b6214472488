//! The watch stream and blocking queries: a snapshot then each change, waiting for a change
//! or the deadline, and both ended by a shutdown.

use super::*;
use shoal::api::types::*;
use shoal::client::MemberQuery;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn watch_sends_a_snapshot_then_each_change() {
    let f = fixture().await;
    let mut w = f.client.watch(None).await.unwrap();
    let first = tokio::time::timeout(STEP, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let snap = match first {
        WatchLine::Snapshot(s) => s,
        other => panic!("first line is not a snapshot: {other:?}"),
    };
    assert_eq!(snap.members.len(), 1);
    let mut set = BTreeMap::new();
    set.insert("color".to_string(), "blue".to_string());
    f.client.set_tags(set, vec![]).await.unwrap();
    let deadline = Instant::now() + STEP;
    let ev = loop {
        assert!(Instant::now() < deadline, "no event for the tag change");
        let line = tokio::time::timeout(STEP, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let WatchLine::Event(e) = line {
            if let shoal_core::EventKind::Member { member, .. } = &e.kind {
                if member.tags.get("color").map(String::as_str) == Some("blue") {
                    break e;
                }
            }
        }
    };
    assert!(ev.index > snap.index);

    // Raw lines: the snapshot carries "type":"snapshot"; events carry index, at_ms, type.
    let path = f.path.clone();
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /v1/watch HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut text = String::new();
    let deadline = Instant::now() + STEP;
    while !text.contains("\"type\":\"snapshot\"") {
        assert!(Instant::now() < deadline, "no snapshot line: {text}");
        let n = tokio::time::timeout(STEP, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text
        .to_lowercase()
        .contains("content-type: application/x-ndjson"));

    // With ?index=N of the current state, no snapshot is repeated: the next line is an event.
    let idx = f.client.local().await.unwrap().index;
    let mut w2 = f.client.watch(Some(idx)).await.unwrap();
    f.client.delete_tag("color").await.unwrap();
    let line = tokio::time::timeout(STEP, w2.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(line, WatchLine::Event(ref e) if e.index > idx),
        "{line:?}"
    );
}

#[tokio::test]
async fn blocking_query_waits_for_a_change_or_the_deadline() {
    let f = fixture().await;
    let c = f.client.clone();
    let idx = c.members(&MemberQuery::default()).await.unwrap().index;

    // Nothing changes: answers after the wait with the same index.
    let t0 = Instant::now();
    let r = c
        .members_after(&MemberQuery::default(), idx, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(r.index, idx);
    assert!(t0.elapsed() >= Duration::from_millis(250));

    // A change during the wait wakes it up.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.members_after(&MemberQuery::default(), idx, Duration::from_secs(20))
                .await
        })
    };
    // Without a change it never answers: checked for the whole 100 ms, not sampled once.
    still_waiting(
        &waiter,
        Duration::from_millis(100),
        "a blocking query without a change",
    )
    .await;
    let mut set = BTreeMap::new();
    set.insert("x".to_string(), "1".to_string());
    c.set_tags(set, vec![]).await.unwrap();
    let r = tokio::time::timeout(STEP, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(r.index > idx);
    assert_eq!(r.members[0].tags.get("x").map(String::as_str), Some("1"));

    // An index from another life of the agent answers at once.
    let r = tokio::time::timeout(
        STEP,
        c.members_after(
            &MemberQuery::default(),
            r.index + 1000,
            Duration::from_secs(60),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(r.index < 1000);
}

#[tokio::test]
async fn shutdown_ends_open_watches_and_blocking_queries() {
    let mut f = fixture().await;
    let mut w = f.client.watch(None).await.unwrap();
    let first = tokio::time::timeout(STEP, w.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(WatchLine::Snapshot(_)))));
    let idx = f.client.local().await.unwrap().index;
    let blocked = {
        let c = f.client.clone();
        tokio::spawn(async move {
            c.members_after(&MemberQuery::default(), idx, Duration::from_secs(240))
                .await
        })
    };
    still_waiting(
        &blocked,
        Duration::from_millis(100),
        "a blocking query before shutdown",
    )
    .await;
    tokio::time::timeout(STEP, f.handle.take().unwrap().shutdown())
        .await
        .expect("shutdown is bounded");
    let end = tokio::time::timeout(STEP, w.next()).await.unwrap();
    assert!(end.is_none() || matches!(end, Some(Err(_))), "{end:?}");
    let r = tokio::time::timeout(STEP, blocked).await.unwrap().unwrap();
    // Either it answered as the server stopped, or the connection was cut.
    if let Ok(r) = r {
        assert_eq!(r.index, idx);
    }
    assert!(!f.path.exists());
}
