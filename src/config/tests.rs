//! The configuration's behaviour: precedence of the sources, defaults, and every bad value
//! refused with its field.

use super::*;
use clap::Parser;
use shoal_core::GuardMode;
use shoal_core::{validate_name, MAX_NAME_LEN};
use std::collections::HashMap;
use std::path::Path;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    agent: AgentArgs,
}

fn args(v: &[&str]) -> AgentArgs {
    let mut all = vec!["shoal"];
    all.extend_from_slice(v);
    Cli::try_parse_from(all).expect("flags parse").agent
}

fn load(a: &AgentArgs, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load_with_env(a, &move |k| env.get(k).cloned())
}

fn field(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { field, .. } => field,
        other => panic!("expected an invalid field, got {other}"),
    }
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("shoal.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

#[test]
fn guard_table_reaches_every_guard_knob() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        r#"
        bind = "127.0.0.1:1000"
        [guard]
        snapshot_max_age = "10m"
        warming_timeout = "20s"
        warming_sync = "2s"
        [guard.services.leader]
        fail_closed = true
        "#,
    );
    let c = load(&args(&["--config", p.to_str().unwrap()]), &[]).unwrap();
    assert_eq!(c.guard.snapshot_max_age, Duration::from_secs(600));
    assert_eq!(c.guard.warming_timeout, Duration::from_secs(20));
    assert_eq!(c.guard.warming_sync, Duration::from_secs(2));
    assert!(c.guard.services["leader"].fail_closed);
    let bad = write(&dir, "[guard]\nwarming_sync = \"soon\"\n");
    let e = load(&args(&["--config", bad.to_str().unwrap()]), &[]).unwrap_err();
    assert_eq!(field(e), "guard.warming_sync");
}

#[test]
fn defaults() {
    let c = load(&args(&["--bind", "127.0.0.1:7946"]), &[]).expect("loads");
    assert_eq!(c.bind, "127.0.0.1:7946".parse().unwrap());
    assert_eq!(c.advertise, None);
    assert_eq!(c.advertise_addr(), c.bind);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/shoal"));
    assert_eq!(c.api, PathBuf::from("/var/lib/shoal/shoal.sock"));
    assert_eq!(c.profile, Profile::Lan);
    assert_eq!(c.timings, Profile::Lan.timings());
    assert_eq!(c.guard, GuardConfig::default());
    assert_eq!(c.log_level, "info");
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(validate_name(&c.name).is_ok(), "default name {:?}", c.name);
    let nc = c.node_config();
    assert_eq!(nc.advertise, c.bind);
    assert_eq!(nc.name, c.name);
}

#[test]
fn default_bind_is_all_interfaces_port_7946() {
    // Either an address was detected (there is a route) or it is refused clearly.
    match load(&args(&[]), &[]) {
        Ok(c) => {
            assert_eq!(c.bind, "0.0.0.0:7946".parse().unwrap());
            assert!(!c.advertise_addr().ip().is_unspecified());
            assert_eq!(c.advertise_addr().port(), 7946);
        }
        Err(e) => assert_eq!(field(e), "advertise"),
    }
    // With a loopback seed, the detected address is the loopback one.
    let c = load(&args(&["--join", "127.0.0.1:7000"]), &[]).expect("loads");
    assert!(c.advertise_addr().ip().is_loopback());
}

#[test]
fn sanitized_host_name() {
    assert_eq!(sanitize_name("web 1.example.com"), "web-1.example.com");
    assert_eq!(sanitize_name(""), "shoal");
    assert_eq!(sanitize_name(&"x".repeat(100)).len(), MAX_NAME_LEN);
}

#[test]
fn precedence_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        r#"
        name = "from-file"
        bind = "127.0.0.1:1000"
        data_dir = "/tmp/file"
        profile = "wan"
        log_level = "debug"
        tags = { role = "file", zone = "a" }
        [[services]]
        name = "web"
        port = 80
        [timings]
        probe_period = "6s"
        gossip_interval = "300ms"
        [guard]
        mode = "shadow"
        window = "5m"
        "#,
    );
    let p = p.to_str().unwrap().to_string();
    // File only.
    let c = load(&args(&["--config", &p]), &[]).unwrap();
    assert_eq!(c.name, "from-file");
    assert_eq!(c.bind.port(), 1000);
    assert_eq!(c.profile, Profile::Wan);
    assert_eq!(c.timings.probe_period, Duration::from_secs(6));
    assert_eq!(c.timings.gossip_interval, Duration::from_millis(300));
    // Fields not overridden keep the profile's value.
    assert_eq!(c.timings.probe_rtt, Profile::Wan.timings().probe_rtt);
    assert_eq!(c.guard.mode, GuardMode::Shadow);
    assert_eq!(c.guard.window, Duration::from_secs(300));
    assert_eq!(c.tags.get("role").map(String::as_str), Some("file"));
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.api, PathBuf::from("/tmp/file/shoal.sock"));
    assert_eq!(c.config_file.as_deref(), Some(Path::new(&p)));
    // Env beats file.
    let env = [
        ("SHOAL_NAME", "from-env"),
        ("SHOAL_BIND", "127.0.0.1:2000"),
        ("SHOAL_LOG_LEVEL", "warn"),
    ];
    let c = load(&args(&["--config", &p]), &env).unwrap();
    assert_eq!(c.name, "from-env");
    assert_eq!(c.bind.port(), 2000);
    assert_eq!(c.log_level, "warn");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/file"));
    // Flags beat env and file.
    let c = load(
        &args(&[
            "--config",
            &p,
            "--name",
            "from-flag",
            "--tag",
            "role=flag",
            "--service",
            "db:5432",
            "--guard-mode",
            "off",
        ]),
        &env,
    )
    .unwrap();
    assert_eq!(c.name, "from-flag");
    assert_eq!(c.bind.port(), 2000);
    assert_eq!(c.tags.len(), 1, "flag tags replace the file's");
    assert_eq!(c.tags.get("role").map(String::as_str), Some("flag"));
    assert_eq!(c.services[0].name, "db");
    assert_eq!(c.services[0].port, 5432);
    assert_eq!(c.guard.mode, GuardMode::Off);
    // SHOAL_CONFIG names the file when --config is absent.
    let c = load(&args(&[]), &[("SHOAL_CONFIG", &p)]).unwrap();
    assert_eq!(c.name, "from-file");
}

#[test]
fn the_packaged_config_file_loads() {
    let c = load(
        &args(&[
            "--config",
            "packaging/shoal.toml",
            "--name",
            "n1",
            "--advertise",
            "10.0.0.5:7946",
        ]),
        &[],
    )
    .expect("packaging/shoal.toml is valid");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/shoal"));
    assert_eq!(c.api, PathBuf::from("/var/lib/shoal/shoal.sock"));
    assert_eq!(c.bind.port(), DEFAULT_PORT);
}

#[test]
fn consul_and_dns_listeners() {
    let c = load(&args(&[]), &[]).unwrap();
    assert_eq!(
        (c.consul_api, c.dns, c.dns_ttl),
        (None, None, Duration::ZERO)
    );
    let c = load(
        &args(&["--consul-api", "127.0.0.1:8500", "--dns", "127.0.0.1:8600"]),
        &[("SHOAL_DNS_TTL", "5s")],
    )
    .unwrap();
    assert_eq!(c.consul_api, Some("127.0.0.1:8500".parse().unwrap()));
    assert_eq!(c.dns, Some("127.0.0.1:8600".parse().unwrap()));
    assert_eq!(c.dns_ttl, Duration::from_secs(5));
    // The flags alone take the default addresses.
    let c = load(&args(&["--consul-api", "--dns"]), &[]).unwrap();
    assert_eq!(c.consul_api, Some("127.0.0.1:8500".parse().unwrap()));
    assert_eq!(c.dns, Some("127.0.0.1:8600".parse().unwrap()));
    let c = load(&args(&[]), &[("SHOAL_CONSUL_API", "[::1]:8500")]).unwrap();
    assert_eq!(c.consul_api, Some("[::1]:8500".parse().unwrap()));
    for (flag, field) in [("--consul-api", "consul_api"), ("--dns", "dns")] {
        let e = load(&args(&[flag, "10.0.0.1:8500"]), &[]).unwrap_err();
        assert!(e.to_string().contains(field), "{e}");
    }
    let e = load(&args(&[]), &[("SHOAL_DNS_TTL", "soon")]).unwrap_err();
    assert!(e.to_string().contains("dns_ttl"), "{e}");
}

#[test]
fn listeners_for_other_hosts_only_when_asked_and_the_api_only_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let token = token.to_str().unwrap();
    // Without listen_remote, a non-loopback address is refused and the error says how.
    for (flag, key) in [
        ("--api-http", "api_http"),
        ("--consul-api", "consul_api"),
        ("--dns", "dns"),
    ] {
        let e = load(&args(&[flag, "10.1.2.3:8500"]), &[]).unwrap_err();
        assert!(e.to_string().contains("listen_remote"), "{e}");
        assert_eq!(field(e), key);
    }
    // With it, the read-only listeners take any address (the node's IP, all interfaces).
    let c = load(
        &args(&[
            "--listen-remote",
            "--consul-api",
            "10.1.2.3:8500",
            "--dns",
            "0.0.0.0:8600",
        ]),
        &[],
    )
    .unwrap();
    assert!(c.listen_remote);
    assert_eq!(c.consul_api, Some("10.1.2.3:8500".parse().unwrap()));
    assert_eq!(c.dns, Some("0.0.0.0:8600".parse().unwrap()));
    // The local API for other hosts needs the token: refused without, whatever the address
    // (listen_remote says the listeners are for other hosts).
    for addr in ["10.1.2.3:7947", "127.0.0.2:7947"] {
        let e = load(&args(&["--listen-remote", "--api-http", addr]), &[]).unwrap_err();
        assert!(e.to_string().contains("--api-token-file"), "{e}");
        assert_eq!(field(e), "trust.api_token_file");
        let c = load(
            &args(&[
                "--listen-remote",
                "--api-http",
                addr,
                "--api-token-file",
                token,
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.api_http, Some(addr.parse().unwrap()));
    }
    // From the file too.
    let p = write(
        &dir,
        "listen_remote = true\nconsul_api = \"192.0.2.7:8500\"\n",
    );
    let c = load(&args(&["--config", p.to_str().unwrap()]), &[]).unwrap();
    assert_eq!(c.consul_api, Some("192.0.2.7:8500".parse().unwrap()));
}

#[test]
fn the_key_from_a_file_one_way_only() {
    let c = load(
        &args(&["--encrypt-file", "/run/secrets/shoal/encrypt"]),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.trust.encrypt_file,
        Some(PathBuf::from("/run/secrets/shoal/encrypt"))
    );
    let c = load(&args(&[]), &[("SHOAL_ENCRYPT_FILE", "/k")]).unwrap();
    assert_eq!(c.trust.encrypt_file, Some(PathBuf::from("/k")));
    for extra in [&["--encrypt", "x"][..], &["--insecure"][..]] {
        let mut v = vec!["--encrypt-file", "/k"];
        v.extend_from_slice(extra);
        if extra[0] == "--encrypt" {
            // A real key, so that only the rule between the keys can refuse it.
            v[3] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        }
        let e = load(&args(&v), &[]).unwrap_err();
        assert_eq!(field(e), "trust.encrypt_file", "{v:?}");
    }
}

#[test]
fn the_contract_flags_parse() {
    let c = load(
        &args(&[
            "--name",
            "n1",
            "--bind",
            "127.0.0.2:7946",
            "--advertise",
            "10.0.0.2:7946",
            "--api",
            "unix:/tmp/n1.sock",
            "--api-http",
            "127.0.0.1:8500",
            "--join",
            "127.0.0.1:7946",
            "--join",
            "seed.example:7946",
            "--tag",
            "zone=a",
            "--tag",
            "rack=7",
            "--service",
            "web:8080",
            "--data-dir",
            "/tmp/n1",
            "--profile",
            "local",
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(c.name, "n1");
    assert_eq!(c.advertise_addr(), "10.0.0.2:7946".parse().unwrap());
    assert_eq!(c.api, PathBuf::from("/tmp/n1.sock"));
    assert_eq!(c.api_http, Some("127.0.0.1:8500".parse().unwrap()));
    assert_eq!(c.join.len(), 2);
    assert_eq!(c.tags.len(), 2);
    assert_eq!(c.profile, Profile::Local);
    assert_eq!(c.timings, Profile::Local.timings());
    let meta = c.node_meta();
    assert_eq!(meta.services["web"].port, 8080);
}

#[test]
fn bad_values_are_refused_with_their_field() {
    let base = ["--bind", "127.0.0.1:7946"];
    let cases: &[(&[&str], &str)] = &[
        (&["--name", "bad name!"], "name"),
        (&["--bind", "nonsense"], "bind"),
        (&["--advertise", "0.0.0.0:7946"], "advertise"),
        (&["--advertise", "10.0.0.1"], "advertise"),
        (&["--join", "host:notaport"], "join"),
        (&["--join", "a b:7946"], "join"),
        (&["--tag", "novalue"], "--tag"),
        (&["--tag", "bad key=v"], "tags"),
        (&["--service", "web"], "--service"),
        (&["--service", "web:0"], "--service"),
        (&["--service", "bad name:80"], "services"),
        (&["--api", "tcp:1234"], "api"),
        (&["--api-http", "10.1.2.3:8080"], "api_http"),
        (&["--log-level", "shoal=notalevel"], "log_level"),
        (&["--cluster-label", &"x".repeat(65)], "cluster_label"),
    ];
    for (extra, want) in cases {
        let mut v: Vec<&str> = if extra.contains(&"--bind") {
            Vec::new()
        } else {
            base.to_vec()
        };
        v.extend_from_slice(extra);
        let e = load(&args(&v), &[]).expect_err(&format!("{extra:?} must be refused"));
        let msg = e.to_string();
        assert_eq!(field(e), *want, "{extra:?}: {msg}");
        assert!(msg.contains(want), "{msg}");
    }
    // Env values are checked the same way.
    let env_cases = [
        ("SHOAL_PROFILE", "fast", "profile"),
        ("SHOAL_LOG_FORMAT", "xml", "log_format"),
        ("SHOAL_BIND", "127.0.0.1", "bind"),
    ];
    for (k, v, want) in env_cases {
        let e = load(&args(&[]), &[(k, v)]).expect_err(k);
        assert_eq!(field(e), want);
    }
}

#[test]
fn bad_file_values_are_refused_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[timings]\nprobe_period = \"fast\"\n",
            "timings.probe_period",
        ),
        (
            "[timings]\nprobe_period = \"100ms\"\nprobe_rtt = \"200ms\"\n",
            "timings.probe_rtt",
        ),
        (
            "[timings]\nsuspicion_mult = 0.5\n",
            "timings.suspicion_mult",
        ),
        (
            "[guard]\nmax_removal_ratio = 1.5\n",
            "guard.max_removal_ratio",
        ),
        ("[guard]\nmode = \"maybe\"\n", "guard.mode"),
        ("[guard]\nwindow = \"0s\"\n", "guard.window"),
        ("profile = \"fast\"\n", "profile"),
        ("dns_ttl = \"9999999999s\"\n", "dns_ttl"),
        ("restart_grace = \"0s\"\n", "restart_grace"),
        ("restart_grace = \"2h\"\n", "restart_grace"),
        ("[trust]\nreplay_window = \"1s\"\n", "trust.replay_window"),
        ("[trust]\nmax_sessions = 8\n", "trust.max_sessions"),
        ("[trust]\nplaintext = \"maybe\"\n", "trust.plaintext"),
        (
            "[api_server]\nheader_timeout = \"soon\"\n",
            "api_server.header_timeout",
        ),
        (
            "[[services]]\nname = \"web\"\nport = 80\n[[services]]\nname = \"web\"\nport = 81\n",
            "services",
        ),
    ];
    for (text, want) in cases {
        let p = write(&dir, &format!("bind = \"127.0.0.1:1\"\n{text}"));
        let a = AgentArgs {
            config: Some(p),
            ..Default::default()
        };
        let e = load(&a, &[]).expect_err(text);
        let msg = e.to_string();
        assert_eq!(field(e), want, "{text}: {msg}");
        if want == "trust.replay_window" {
            assert!(msg.contains("must be between 5s and 1h"), "{msg}");
        }
    }
    // Unknown keys and wrong types: a parse error that names the key.
    for (text, key) in [
        ("bnid = \"127.0.0.1:1\"\n", "bnid"),
        ("[timings]\nprobe_perod = \"1s\"\n", "probe_perod"),
        ("[guard]\nmin_removals = \"two\"\n", "min_removals"),
    ] {
        let p = write(&dir, text);
        let a = AgentArgs {
            config: Some(p),
            ..Default::default()
        };
        let e = load(&a, &[]).expect_err(text);
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(e.to_string().contains(key), "{e}");
    }
}

#[test]
fn unreadable_file_is_a_clear_error() {
    let a = AgentArgs {
        config: Some(PathBuf::from("/nonexistent/shoal.toml")),
        ..Default::default()
    };
    let e = load(&a, &[]).expect_err("missing file");
    let msg = e.to_string();
    assert!(
        msg.contains("cannot read config file /nonexistent/shoal.toml"),
        "{msg}"
    );
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    for bad in ["", "5", "ms", "5x", "1..5s", "-1s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn seeds_get_a_default_port() {
    assert_eq!(seed_with_port("10.0.0.1"), "10.0.0.1:7946");
    assert_eq!(seed_with_port("seed.local"), "seed.local:7946");
    assert_eq!(seed_with_port("seed.local:8000"), "seed.local:8000");
    assert_eq!(seed_with_port("[::1]:8000"), "[::1]:8000");
}

#[test]
fn several_instances_of_a_service_in_the_file_need_their_own_ids() {
    let dir = tempfile::tempdir().unwrap();
    let file = |body: &str| {
        let p = write(&dir, &format!("bind = \"127.0.0.1:1000\"\n{body}"));
        load(&args(&["--config", p.to_str().unwrap()]), &[])
    };
    let c = file(
        r#"
        [[services]]
        name = "web"
        id = "web-1"
        port = 8080
        [[services.checks]]
        ttl = "1m"
        [[services]]
        name = "web"
        id = "web-2"
        port = 8081
        "#,
    )
    .unwrap();
    let meta = c.node_meta();
    assert_eq!(meta.services["web-1"].port, 8080);
    assert_eq!(meta.services["web-2"].port, 8081);
    assert_eq!(meta.services["web-2"].name, "web");
    // Checks attach to the instance: `service:ID`.
    let checks = c.service_checks().unwrap();
    assert_eq!(checks[0].0, "web-1");
    assert_eq!(checks[0].1[0].id, "service:web-1");
    // Two instances of one name without ids share the id: refused, with the field.
    let e = file(
        r#"
        [[services]]
        name = "web"
        port = 8080
        [[services]]
        name = "web"
        port = 8081
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("services") && e.contains("own id"), "{e}");
    // An id outside Consul's rule.
    let e = file(
        r#"
        [[services]]
        name = "web"
        id = "web/1"
        port = 8080
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("instance id"), "{e}");
}
