//! What the packaging relies on, checked against the real binary: the API socket's group
//! reaching the socket in the default place (the data directory), the Kubernetes DaemonSet
//! as written (parsed, its structure asserted, the agent run with its configuration), and
//! the readiness notification of the systemd unit (`Type=notify`).
//!
//! Owns these tests and their small helpers (spawning `shoal agent`, waiting for its API);
//! must not test what the API answers (tests/api does).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A `shoal agent` child, killed when dropped.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `shoal agent` on loopback (port 0, profile local) with `extra` flags.
fn agent(data: &Path, extra: &[&str]) -> AgentProc {
    agent_notifying(data, extra, None)
}

/// [`agent`] with `NOTIFY_SOCKET` set to `notify` (unset when `None`).
fn agent_notifying(data: &Path, extra: &[&str], notify: Option<&str>) -> AgentProc {
    let mut c = Command::new(SHOAL);
    c.args(["agent", "--name", "pkg", "--bind", "127.0.0.1:0"])
        .args(["--profile", "local", "--log-level", "warn", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::null());
    match notify {
        Some(n) => c.env("NOTIFY_SOCKET", n),
        None => c.env_remove("NOTIFY_SOCKET"),
    };
    AgentProc(c.spawn().expect("spawn shoal agent"))
}

/// Runs `shoal info` against `api`, as this process or as `uid:gid`.
fn info(api: &str, as_user: Option<(u32, u32)>) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(SHOAL);
    c.args(["info", "--api", api]).env_remove("SHOAL_API_TOKEN");
    if let Some((uid, gid)) = as_user {
        c.uid(uid).gid(gid);
    }
    c.output().expect("run shoal info")
}

/// Polls `shoal info` until the agent answers (at most 20 s).
fn wait_for_api(api: &str, child: &mut AgentProc) {
    let start = Instant::now();
    for _ in 0..400 {
        if info(api, None).status.success() {
            return;
        }
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!("the agent exited with {st} before its API answered");
        }
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent's API at {api} did not answer within 20 s");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `socket_group` with the socket at its default place, `<data_dir>/shoal.sock`: a user of
/// that group (and no other) reaches the API, and the keyring stays 0600. As root the test
/// runs `shoal info` as nobody:nogroup (the socket group) and as another uid and gid; as
/// another user it checks the modes and group only.
#[test]
fn socket_group_reaches_the_socket_in_the_data_directory() {
    let root = tempfile::tempdir().unwrap();
    // The path down to the data directory must be searchable by the other users.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data: PathBuf = root.path().join("data");
    let probe = root.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let is_root = std::fs::metadata(&probe).unwrap().uid() == 0;
    let gid = if is_root {
        65534
    } else {
        std::fs::metadata(&probe).unwrap().gid()
    };
    let cfg = root.path().join("shoal.toml");
    std::fs::write(&cfg, format!("[api_server]\nsocket_group = \"{gid}\"\n")).unwrap();
    let key =
        String::from_utf8(Command::new(SHOAL).arg("keygen").output().unwrap().stdout).unwrap();
    let mut a = agent(
        &data,
        &["--config", cfg.to_str().unwrap(), "--encrypt", key.trim()],
    );
    let sock = data.join("shoal.sock");
    let api = format!("unix:{}", sock.display());
    wait_for_api(&api, &mut a);
    assert_eq!(
        mode(&data),
        0o710,
        "the data directory: search for the group only"
    );
    assert_eq!(std::fs::metadata(&data).unwrap().gid(), gid);
    assert_eq!(mode(&sock), 0o660);
    assert_eq!(std::fs::metadata(&sock).unwrap().gid(), gid);
    assert_eq!(mode(&data.join("keyring")), 0o600);
    if !is_root {
        eprintln!("not root: the connection as another user is not tried");
        return;
    }
    let member = info(&api, Some((65534, 65534)));
    assert!(
        member.status.success(),
        "a member of the socket group cannot reach the API: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert!(String::from_utf8_lossy(&member.stdout).contains("pkg"));
    let stranger = info(&api, Some((65533, 65533)));
    assert!(
        !stranger.status.success(),
        "a user outside the group reached the API"
    );
    // The group can reach the socket by name, and read nothing else.
    use std::os::unix::process::CommandExt;
    let list = Command::new("ls")
        .arg(&data)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        !list.status.success(),
        "the group can list the data directory"
    );
    let read = Command::new("cat")
        .arg(data.join("keyring"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!read.status.success(), "the group can read the keyring");
}

/// Every YAML document of `file` (under packaging/kubernetes), as JSON, read with python3's
/// PyYAML (`apt-get install python3-yaml`); `None` (a visible skip) when it is missing and
/// CI did not require it.
fn yaml_docs(file: &str) -> Option<Vec<serde_json::Value>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/kubernetes")
        .join(file);
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml\n\
             json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
        ])
        .arg(&path)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).expect("JSON")),
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => {
            skip_or_fail("python3-yaml is not installed")
        }
        Ok(o) => panic!(
            "{} is not valid YAML: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => skip_or_fail(&format!("python3 cannot run: {e}")),
    }
}

fn skip_or_fail<T>(why: &str) -> Option<T> {
    let required = std::env::var("SHOAL_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    assert!(!required, "{why} (SHOAL_REQUIRE_CLIENTS=1)");
    eprintln!("SKIPPED: {why} (apt-get install python3-yaml)");
    None
}

/// The document of `kind` named `name`.
fn doc<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Kubernetes' `$(VAR)` expansion of an env value, from the variables defined before it.
fn expand(value: &str, vars: &[(String, String)]) -> String {
    let mut v = value.to_string();
    for (k, val) in vars {
        v = v.replace(&format!("$({k})"), val);
    }
    v
}

/// One HTTP/1.1 request (a small JSON body, connection closed after it): the status code.
fn status_of(addr: &str, method: &str, path: &str, auth: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let body = r#"{"set":{"k":"v"}}"#;
    let auth = auth
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// One UDP DNS query of `qtype` for `qname` (labels without the root); the answer's rcode
/// and answer count.
fn dns_query(server: std::net::SocketAddr, qname: &[&str], qtype: u16) -> (u8, u16) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut q = vec![0x5a, 0x5a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in qname {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    sock.send_to(&q, server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("a DNS answer within 5 s");
    assert!(
        n >= 12 && buf[0] == 0x5a && buf[1] == 0x5a,
        "not our answer"
    );
    (buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]]))
}

const SOA: u16 = 6;
const A: u16 = 1;
const REFUSED: u8 = 5;

/// The DaemonSet as written: on the host network, the listeners on the node's IP (the
/// downward API), the key and token from a Secret mounted as files, probes on the API, a
/// non-root read-only container; then the agent run with exactly that configuration and
/// environment (the node's IP standing as 127.0.0.201, the Secret's directory as a temporary
/// one) answers the probe, /metrics, the Consul API and DNS there, and takes commands only
/// with the token. An app pod mounts nothing; CoreDNS forwards the zone to the DNS Service.
#[test]
fn the_daemonset_works_as_written() {
    let Some(docs) = yaml_docs("daemonset.yaml") else {
        return;
    };
    let ds = doc(&docs, "DaemonSet", "shoal");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    // The environment: HOST_IP from status.hostIP; no secret in any variable.
    let env = c["env"].as_array().unwrap();
    let host_ip = env
        .iter()
        .find(|e| e["name"] == "HOST_IP")
        .expect("HOST_IP");
    assert_eq!(
        host_ip["valueFrom"]["fieldRef"]["fieldPath"],
        "status.hostIP"
    );
    for e in env {
        assert!(
            e["valueFrom"].get("secretKeyRef").is_none(),
            "{} takes a secret as an environment variable",
            e["name"]
        );
    }
    let node_ip = "127.0.0.201";
    let mut vars: Vec<(String, String)> = vec![];
    for e in env {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if name == "HOST_IP" {
            node_ip.to_string()
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" {
            "node-a".to_string()
        } else {
            expand(e["value"].as_str().expect("a plain value"), &vars)
        };
        vars.push((name, value));
    }
    let var = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    for (k, port) in [
        ("SHOAL_API_HTTP", 7947),
        ("SHOAL_CONSUL_API", 8500),
        ("SHOAL_DNS", 8600),
    ] {
        assert_eq!(var(k), Some(format!("{node_ip}:{port}")), "{k}");
    }
    // Ports: each on the host as in the container; the probes ask the API's port.
    let ports = c["ports"].as_array().unwrap();
    let port_of = |name: &str| {
        let p = ports.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["containerPort"], p["hostPort"], "{name}");
        p["containerPort"].as_u64().unwrap()
    };
    assert_eq!(port_of("api"), 7947);
    assert_eq!(port_of("consul"), 8500);
    assert_eq!((port_of("dns"), port_of("dns-tcp")), (8600, 8600));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "api", "{probe}");
        assert_eq!(c[probe]["httpGet"]["path"], "/v1/self", "{probe}");
    }
    // The Secret as files: mounted read-only where the configuration reads key and token.
    let mount_of = |volume: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("no mount of {volume}"))
            .clone()
    };
    let secret_mount = mount_of("secret");
    assert_eq!(secret_mount["readOnly"], true);
    let secret_dir = secret_mount["mountPath"].as_str().unwrap().to_string();
    let secret_vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "secret")
        .unwrap();
    let secret_name = secret_vol["secret"]["secretName"].as_str().unwrap();
    assert_eq!(secret_vol["secret"]["defaultMode"], 0o440);
    // The name the file's header tells the operator to create.
    let header = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes/daemonset.yaml"),
    )
    .unwrap();
    assert!(header.contains(&format!("create secret generic {secret_name}")));
    let toml_text = doc(&docs, "ConfigMap", "shoal")["data"]["shoal.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let config_dir = mount_of("config")["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c["args"],
        serde_json::json!(["agent", "--config", format!("{config_dir}/shoal.toml")])
    );
    for key in ["encrypt", "api-token"] {
        assert!(
            toml_text.contains(&format!("\"{secret_dir}/{key}\"")),
            "the configuration does not read {key} from the Secret's mount"
        );
    }

    // Run it: the configuration and environment as written, the Secret's files in a
    // temporary directory, the data directory (a hostPath) too.
    let root = tempfile::tempdir().unwrap();
    let secrets = root.path().join("secret");
    std::fs::create_dir(&secrets).unwrap();
    let key =
        String::from_utf8(Command::new(SHOAL).arg("keygen").output().unwrap().stdout).unwrap();
    std::fs::write(secrets.join("encrypt"), key.trim()).unwrap();
    std::fs::write(secrets.join("api-token"), "tok-123\n").unwrap();
    let cfg = root.path().join("shoal.toml");
    std::fs::write(
        &cfg,
        toml_text.replace(&secret_dir, secrets.to_str().unwrap()),
    )
    .unwrap();
    let data = root.path().join("data");
    let mut cmd = Command::new(SHOAL);
    cmd.args(["agent", "--config", cfg.to_str().unwrap()])
        // Gossip on a free loopback port instead of the node's 0.0.0.0:7946.
        .args([
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["--log-level", "warn"])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null());
    for (k, v) in &vars {
        if k != "SHOAL_JOIN" {
            cmd.env(k, v);
        }
    }
    let mut a = AgentProc(cmd.spawn().expect("spawn the agent"));
    let api = format!("http://{node_ip}:7947");
    wait_for_api(&api, &mut a);
    let http = |method: &str, port_path: &str, auth: Option<&str>| -> u16 {
        let (port, path) = port_path.split_once('/').unwrap();
        status_of(
            &format!("{node_ip}:{port}"),
            method,
            &format!("/{path}"),
            auth,
        )
    };
    assert_eq!(http("GET", "7947/v1/self", None), 200, "the probe");
    assert_eq!(http("GET", "7947/metrics", None), 200, "a scrape");
    assert_eq!(http("PUT", "7947/v1/tags", None), 401);
    assert_eq!(http("PUT", "7947/v1/tags", Some("tok-123")), 200);
    assert_eq!(http("GET", "8500/v1/catalog/services", None), 200);
    let dns: std::net::SocketAddr = format!("{node_ip}:8600").parse().unwrap();
    assert_eq!(dns_query(dns, &["shoal"], SOA), (0, 1), "the SOA of shoal.");
    assert!(
        data.join("keyring").exists(),
        "the key file seeded the keyring"
    );

    // The app pod mounts nothing of the host and reaches the agent at the node's IP.
    let app = doc(&docs, "Pod", "shoal-client-example");
    assert!(app["spec"].get("volumes").is_none() && app["spec"].get("hostNetwork").is_none());
    let app_env = app["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(app_env
        .iter()
        .any(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"));
    // CoreDNS forwards the zone to the DNS Service, which reaches the agent of its node.
    let svc = doc(&docs, "Service", "shoal-dns");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local");
    assert_eq!(svc["spec"]["selector"]["app"], "shoal");
    for p in svc["spec"]["ports"].as_array().unwrap() {
        assert_eq!(
            (p["port"].as_u64(), p["targetPort"].as_u64()),
            (Some(53), Some(8600))
        );
    }
    let Some(stub) = yaml_docs("coredns-stub.yaml") else {
        return;
    };
    let corefile = doc(&stub, "ConfigMap", "coredns-custom")["data"]["shoal.server"]
        .as_str()
        .unwrap()
        .to_string();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(corefile.starts_with("shoal:53 {"), "{corefile}");
    assert!(corefile.contains(&format!("forward . {ip}")), "{corefile}");
}

/// `Type=notify`: with `NOTIFY_SOCKET` set, the agent sends `READY=1` once its API answers
/// (nothing before it), and `STOPPING=1` on SIGTERM before it exits.
#[test]
fn readiness_is_notified_once_the_api_answers_and_stopping_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let notify_path = root.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let data = root.path().join("data");
    let api = format!("unix:{}", data.join("shoal.sock").display());
    let mut a = agent_notifying(&data, &["--insecure"], notify_path.to_str());
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    // At the moment READY=1 arrives, the API answers at the first try.
    let o = info(&api, None);
    assert!(
        o.status.success(),
        "READY=1 before the API answered: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // SIGTERM: STOPPING=1, then the process exits.
    let pid = a.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let n = notify.recv(&mut buf).expect("STOPPING=1 within 20 s");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = a.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the agent did not exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    // Nothing else was sent.
    notify.set_nonblocking(true).unwrap();
    assert!(notify.recv(&mut buf).is_err());
}

/// The same through an abstract socket name (`@name`), as systemd usually sets it.
#[test]
fn readiness_reaches_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("shoal-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let notify = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let _a = agent_notifying(&data, &["--insecure"], Some(&format!("@{name}")));
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
}

/// The unit's exposure as `systemd-analyze security --offline=yes` rates it (0 safest, 10
/// most exposed): 8.5 before the hardening, at most 2.0 now. Skipped (visibly) where
/// systemd-analyze is missing or predates `--offline` (systemd 252).
#[test]
fn the_systemd_unit_is_hardened() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/debian/shoal.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for want in [
        "Type=notify",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(text.contains(want), "the unit lacks {want:?}");
    }
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
    {
        Ok(o) if o.status.success() || !o.stdout.is_empty() => o,
        _ => {
            eprintln!("SKIPPED: systemd-analyze security --offline=yes is not available");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("shoal.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in: {text}"));
    assert!(score <= 2.0, "exposure {score} (8.5 before the hardening)");
}

/// `dns_domain = "consul."`: the agent answers the zone Consul users' resolvers already
/// forward (`NODE.node.consul`, the SOA of `consul.`), and refuses `shoal.`.
#[test]
fn the_dns_zone_is_configurable() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let dns: std::net::SocketAddr = "127.0.0.202:8600".parse().unwrap();
    let mut a = agent(
        &data,
        &[
            "--insecure",
            "--dns",
            "127.0.0.202:8600",
            "--dns-domain",
            "consul",
        ],
    );
    wait_for_api(
        &format!("unix:{}", data.join("shoal.sock").display()),
        &mut a,
    );
    assert_eq!(dns_query(dns, &["consul"], SOA), (0, 1));
    assert_eq!(dns_query(dns, &["pkg", "node", "consul"], A), (0, 1));
    assert_eq!(dns_query(dns, &["pkg", "node", "shoal"], A).0, REFUSED);
}

/// `--encrypt KEY` on the command line warns that every local user can read the key there;
/// the same key from `--encrypt-file` or `SHOAL_ENCRYPT` does not.
#[test]
fn a_key_on_the_command_line_is_warned_about() {
    use std::io::Read;
    let root = tempfile::tempdir().unwrap();
    let key =
        String::from_utf8(Command::new(SHOAL).arg("keygen").output().unwrap().stdout).unwrap();
    let key_file = root.path().join("cluster.key");
    std::fs::write(&key_file, &key).unwrap();
    let cases: [(&str, &[&str], Option<&str>, bool); 3] = [
        ("flag", &["--encrypt", key.trim()], None, true),
        (
            "file",
            &["--encrypt-file", key_file.to_str().unwrap()],
            None,
            false,
        ),
        ("env", &[], Some(key.trim()), false),
    ];
    for (name, extra, env, warned) in cases {
        let data = root.path().join(name);
        let mut c = Command::new(SHOAL);
        c.args(["agent", "--name", name, "--bind", "127.0.0.1:0"])
            .args(["--profile", "local", "--log-level", "warn", "--data-dir"])
            .arg(&data)
            .args(extra)
            .env_remove("SHOAL_ENCRYPT")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(k) = env {
            c.env("SHOAL_ENCRYPT", k);
        }
        let mut a = AgentProc(c.spawn().expect("spawn shoal agent"));
        // Once the API answers, every start-up line has been written.
        wait_for_api(
            &format!("unix:{}", data.join("shoal.sock").display()),
            &mut a,
        );
        let _ = a.0.kill();
        let _ = a.0.wait();
        let mut err = String::new();
        a.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(err.contains("/proc/PID/cmdline"), warned, "{name}: {err}");
        assert!(!err.contains(key.trim()), "{name}: the key is in the log");
    }
}
