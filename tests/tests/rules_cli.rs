//! `panorama rules check`: the shipped examples pass, and a broken rule
//! file is refused with its file:line:col and what was expected.

use std::process::Command;

use panorama_tests::{binary, workspace};

fn check(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(binary("panorama"))
        .args(["rules", "check"])
        .arg(dir)
        .output()
        .expect("run panorama rules check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_rules_check() {
    let (ok, stdout, stderr) = check(&workspace().join("examples/rules"));
    assert!(ok, "examples/rules must pass: {stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    // One file per layer at least.
    for layer in ["business", "url", "call", "component", "infra"] {
        let text =
            std::fs::read_to_string(workspace().join(format!("examples/rules/{layer}.toml")))
                .unwrap_or_else(|e| panic!("examples/rules/{layer}.toml: {e}"));
        assert!(
            text.contains(&format!("layer = \"{layer}\"")),
            "{layer}.toml has a {layer} rule"
        );
    }
}

#[test]
fn broken_files_are_refused_with_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url.toml");
    for (text, at, needle) in [
        (
            "[[rule]]\nname = \"x\"\nlayer = \"url\"\nwhen = \"eror_ratio > 5%\"\n",
            "url.toml:4:9:",
            "unknown metric `eror_ratio`",
        ),
        (
            "[[rule]]\nname = \"x\"\nlayer = \"url\"\nwhen = \"error_ratio > 5 parsecs\"\n",
            "url.toml:4:25:",
            "expected `and`, `or`",
        ),
        (
            "[[rule]]\nname = \"x\"\nlayer = \"urls\"\nwhen = \"count > 1\"\n",
            "url.toml:3:10:",
            "unknown layer `urls`",
        ),
        (
            "[[rule]]\nname = \"x\"\nlayer = \"url\"\nwhen = \"count > 1\"\nwindow = \"5\"\n",
            "url.toml:5:11:",
            "needs a unit",
        ),
        (
            "[[rule]]\nname = \"x\"\nlayer = \"url\"\nwhen = \"count > 1\"\nseries = \"re:(\"\n",
            "url.toml:5:11:",
            "invalid regex",
        ),
        (
            "[[rule]]\nname = \"x\"\nlayer = \"url\"\nwhen = \"count > 1\"\nsumary = \"typo\"\n",
            "url.toml:5:1:",
            "unknown field `sumary`",
        ),
        (
            "[[route]]\nreceivers = [\"nobody\"]\n",
            "url.toml:2:15:",
            "receiver `nobody`, which is not defined",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let (ok, _, stderr) = check(dir.path());
        assert!(!ok, "{text:?} must be refused");
        let first = stderr.lines().next().unwrap_or_default();
        let rel = first
            .rsplit_once(std::path::MAIN_SEPARATOR)
            .map_or(first, |(_, r)| r);
        assert!(
            rel.starts_with(at),
            "{text:?}: {first:?} should start with …{at}"
        );
        assert!(
            first.contains(needle),
            "{text:?}: {first:?} should say {needle}"
        );
    }
}
