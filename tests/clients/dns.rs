//! The DNS interface with raw queries (hickory-proto messages over UDP and TCP) and `dig`.

use super::*;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::{TcpStream, UdpSocket};

/// One query over UDP (`edns`: offer 4096 bytes) or TCP; bounded in time.
pub async fn query(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
    edns: bool,
) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).expect("a name"), rtype));
    m.metadata.recursion_desired = true;
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    let bytes = m.to_vec().expect("encode");
    let fut = async {
        if tcp {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(&(bytes.len() as u16).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&bytes).await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).await.unwrap();
            buf
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.send_to(&bytes, addr).await.unwrap();
            let mut buf = vec![0u8; 65535];
            let (n, _) = s.recv_from(&mut buf).await.unwrap();
            buf.truncate(n);
            buf
        }
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| panic!("no DNS answer for {name} {rtype} within 5 s"));
    let resp = Message::from_vec(&raw).expect("a DNS message");
    assert_eq!(resp.metadata.id, m.metadata.id);
    resp
}

/// The A records of `name`, sorted.
pub async fn a_records(addr: SocketAddr, name: &str) -> Vec<String> {
    let r = query(addr, name, RecordType::A, false, false).await;
    let mut v: Vec<String> = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn srv_of(m: &Message) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_from_the_served_view() {
    let mut specs = super::consul::specs();
    // A node whose tags make a TXT answer larger than 512 bytes: truncated over UDP.
    specs[2].tags = vec![
        ("zone", "b"),
        ("a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
        ("c", "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"),
    ];
    let c = start(&specs).await;
    c.converge_fully(SETTLE).await;
    let d = c.dns_addr(0);

    // NAME.service.shoal: A, and SRV with the node's A in the additional section.
    assert_eq!(
        a_records(d, "web.service.shoal.").await,
        vec!["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    );
    let r = query(d, "web.service.shoal.", RecordType::SRV, false, false).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(
        srv_of(&r),
        vec![
            (8080, "n0.node.shoal.".to_string()),
            (8081, "n1.node.shoal.".to_string()),
            (8082, "n2.node.shoal.".to_string()),
        ]
    );
    let mut extra: Vec<(String, String)> = r
        .additionals
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some((rec.name.to_ascii(), a.0.to_string())),
            _ => None,
        })
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        vec![
            ("n0.node.shoal.".to_string(), "127.0.0.1".to_string()),
            ("n1.node.shoal.".to_string(), "127.0.0.2".to_string()),
            ("n2.node.shoal.".to_string(), "127.0.0.3".to_string()),
        ]
    );
    assert!(r.answers.iter().all(|rec| rec.ttl == 0), "default TTL 0");
    // RFC 2782 form, tags, case.
    let r = query(d, "_web._tcp.service.shoal.", RecordType::SRV, false, false).await;
    assert_eq!(srv_of(&r).len(), 3);
    let r = query(
        d,
        "primary.web.service.shoal.",
        RecordType::SRV,
        false,
        false,
    )
    .await;
    assert_eq!(srv_of(&r), vec![(8080, "n0.node.shoal.".to_string())]);
    let r = query(d, "_db._role.service.shoal.", RecordType::SRV, false, false).await;
    assert_eq!(srv_of(&r), vec![(5432, "n0.node.shoal.".to_string())]);
    assert_eq!(a_records(d, "WEB.Service.Shoal.").await.len(), 3);
    // NODE.node.shoal: A and TXT.
    assert_eq!(a_records(d, "n1.node.shoal.").await, vec!["127.0.0.2"]);
    let r = query(d, "n1.node.shoal.", RecordType::TXT, false, false).await;
    let txt: Vec<String> = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(txt, vec!["zone=b"]);
    // An IPv4 node has no AAAA: NOERROR, empty, with the SOA.
    let r = query(d, "n1.node.shoal.", RecordType::AAAA, false, false).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities.len(), 1);
    // Unknown names: NXDOMAIN; outside the zone: REFUSED.
    for n in [
        "nothing.service.shoal.",
        "nobody.node.shoal.",
        "x.y.z.shoal.",
        "nope.web.service.shoal.",
    ] {
        let r = query(d, n, RecordType::A, false, false).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{n}");
    }
    let r = query(d, "example.com.", RecordType::A, false, false).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);

    // A large answer: truncated over plain UDP, whole over TCP (and over EDNS if it fits).
    let r = query(d, "n2.node.shoal.", RecordType::TXT, false, false).await;
    assert!(r.metadata.truncation, "over 512 bytes: TC set");
    assert!(r.answers.is_empty());
    let r = query(d, "n2.node.shoal.", RecordType::TXT, true, false).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 1);
    let whole = match &r.answers[0].data {
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        other => panic!("not a TXT record: {other:?}"),
    };
    assert!(
        whole.contains("zone=b") && whole.contains("c=ccc"),
        "{whole}"
    );
    let r = query(d, "n2.node.shoal.", RecordType::TXT, false, true).await;
    assert!(!r.metadata.truncation, "fits the EDNS size");
    assert_eq!(
        c.dns(0)
            .stats()
            .truncated
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // Malformed input: a clear error or a counted drop, never a panic, and the server goes on.
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&[0x12, 0x34, 1, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0xff], d)
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .expect("FORMERR answer")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(
        n <= 13,
        "never answer with more than was sent to a malformed query"
    );
    s.send_to(&[1, 2, 3], d).await.unwrap();
    assert_eq!(a_records(d, "n0.node.shoal.").await, vec!["127.0.0.1"]);

    // dig, the client people already have.
    let Some(dig) = find_tool("dig", "dns_answers_from_the_served_view (dig part)") else {
        return;
    };
    let port = d.port().to_string();
    let run = move |args: Vec<String>| {
        let out = std::process::Command::new(&dig)
            .args(&args)
            .output()
            .expect("dig runs");
        assert!(out.status.success(), "dig {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = |n: &str, t: &str| -> Vec<String> {
        [
            "@127.0.0.1",
            "-p",
            &port,
            n,
            t,
            "+short",
            "+time=3",
            "+tries=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let srv = tokio::task::spawn_blocking({
        let a = base("web.service.shoal", "SRV");
        let run = run.clone();
        move || run(a)
    })
    .await
    .unwrap();
    let mut lines: Vec<&str> = srv.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "1 1 8080 n0.node.shoal.",
            "1 1 8081 n1.node.shoal.",
            "1 1 8082 n2.node.shoal.",
        ],
        "dig SRV: {srv}"
    );
    let a = tokio::task::spawn_blocking({
        let a = base("n2.node.shoal", "A");
        let run = run.clone();
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(a.trim(), "127.0.0.3");
    // dig retries over TCP by itself when the UDP answer is truncated.
    let txt = tokio::task::spawn_blocking({
        let mut a = base("n2.node.shoal", "TXT");
        a.push("+noedns".into());
        move || run(a)
    })
    .await
    .unwrap();
    assert!(
        txt.contains("zone=b") && txt.contains("c=ccc"),
        "dig TXT: {txt}"
    );
}
