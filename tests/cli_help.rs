//! The help of `shoal`'s verbs, from the real binary: each lists only the flags it takes (the
//! client's `--api`/`--format` on client commands, not on `agent`, `dev` or `keygen`), and
//! `shoal agent --help` shows every environment variable the agent reads.
//!
//! Owns these checks only; the flags' behaviour is tested where each verb is.

use std::process::Command;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn help(args: &[&str]) -> String {
    let o = Command::new(SHOAL)
        .args(args)
        .arg("--help")
        .env_remove("SHOAL_API")
        .output()
        .expect("run shoal");
    assert!(o.status.success(), "{args:?} --help failed");
    String::from_utf8(o.stdout).unwrap()
}

fn lists(help: &str, flag: &str) -> bool {
    help.lines()
        .any(|l| l.trim_start().starts_with(&format!("{flag} ")) || l.trim() == flag)
}

#[test]
fn each_verb_lists_only_the_flags_it_takes() {
    for verb in ["keygen", "dev"] {
        let h = help(&[verb]);
        assert!(
            !lists(&h, "--api") && !lists(&h, "--format"),
            "{verb}:\n{h}"
        );
    }
    let agent = help(&["agent"]);
    assert!(!lists(&agent, "--format"), "{agent}");
    assert!(agent.contains("--api <unix:PATH>"), "the agent's own --api");
    for verb in ["members", "guard", "services", "watch", "info"] {
        let h = help(&[verb]);
        assert!(lists(&h, "--api") && lists(&h, "--format"), "{verb}:\n{h}");
    }
    assert!(lists(&help(&["guard"]), "--all"));
    // Still accepted where hidden, before or after the verb (scripts that pass them to
    // every command keep working).
    for args in [
        &["keygen", "--format", "json"][..],
        &["--format", "json", "--api", "unix:/nonexistent", "keygen"][..],
    ] {
        let o = Command::new(SHOAL).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim().len(),
            44,
            "{args:?}"
        );
    }
}

#[test]
fn agent_help_shows_every_environment_variable() {
    let h = help(&["agent"]);
    for var in shoal::config::keys::env_vars() {
        assert!(h.contains(var), "{var} missing from shoal agent --help");
    }
    assert!(h.contains("[env: SHOAL_NAME]"), "{h}");
    assert!(h.contains("Precedence"), "{h}");
}
