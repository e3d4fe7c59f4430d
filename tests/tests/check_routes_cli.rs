//! `panorama-agent check-routes FILE`, the real binary: the series an
//! access log would produce, busiest first with their line counts, hashed
//! asset names, ids and dates in paths collapsed; a config's `routes` run
//! first; and mistakes (no such file, no such source, unknown format)
//! refused with a message that names them.

use std::fmt::Write as _;
use std::process::Command;

use panorama_tests::{binary, workspace};

fn check_routes(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary("panorama-agent"))
        .arg("check-routes")
        .args(args)
        .output()
        .expect("run panorama-agent check-routes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 400 requests of a typical web app over 200 distinct paths, and two
/// lines that are not access-log lines.
fn access_log() -> String {
    let mut log = String::new();
    for i in 0..400u64 {
        let (method, path) = match i % 8 {
            0 | 1 => (
                "GET",
                format!(
                    "/static/app.{:012x}.js",
                    (i / 2).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
                ),
            ),
            2 => (
                "GET",
                format!(
                    "/static/chunk-{:05x}0.css",
                    (i.wrapping_mul(0x2545_f491) >> 8) & 0xf_ffff | 0x1_0000
                ),
            ),
            3 => (
                "GET",
                format!(
                    "/avatars/{:016x}.png",
                    i.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1 << 60
                ),
            ),
            4 => ("GET", format!("/api/orders/{}", 1000 + i)),
            5 => ("GET", format!("/blog/2026/11/{:02}/hello", 1 + i % 28)),
            _ => ("POST", "/api/login".to_owned()),
        };
        writeln!(
            log,
            "10.0.0.{} - - [22/Nov/2026:13:00:{:02} +0000] \"{method} {path} HTTP/1.1\" 200 512 \"-\" \"cli/1.0\" 0.012",
            i % 250,
            i % 60
        )
        .unwrap();
    }
    log.push_str("not an access log line\n\x01\x02\n");
    log
}

#[test]
fn a_web_apps_log_gives_a_few_series_busiest_first() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    std::fs::write(&file, access_log()).unwrap();
    let (ok, stdout, stderr) = check_routes(&[file.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "       100  url GET /static/app.:hash.js\n\
         \x20      100  url POST /api/login\n\
         \x20       50  url GET /api/orders/:num\n\
         \x20       50  url GET /avatars/:hash.png\n\
         \x20       50  url GET /blog/:date/hello\n\
         \x20       50  url GET /static/chunk-:hash.css\n\
         6 series from 402 lines (2 did not parse)\n"
    );
}

#[test]
fn a_configs_routes_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    std::fs::write(&file, access_log()).unwrap();
    // The shipped example: its nginx source folds everything under /static.
    let example = workspace().join("examples/agent.toml");
    let (ok, stdout, stderr) = check_routes(&[
        file.to_str().unwrap(),
        "--config",
        example.to_str().unwrap(),
        "--source",
        "nginx",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "       150  url GET /static/*\n\
         \x20      100  url POST /api/login\n\
         \x20       50  url GET /api/orders/:num\n\
         \x20       50  url GET /avatars/:hash.png\n\
         \x20       50  url GET /blog/:date/hello\n\
         5 series from 402 lines (2 did not parse)\n"
    );
}

#[test]
fn mistakes_are_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    std::fs::write(&file, access_log()).unwrap();
    let missing = dir.path().join("no-such.log");
    let example = workspace().join("examples/agent.toml");
    let cases: [(Vec<&str>, &str); 3] = [
        (vec![missing.to_str().unwrap()], "no-such.log"),
        (
            vec![
                file.to_str().unwrap(),
                "--config",
                example.to_str().unwrap(),
                "--source",
                "nope",
            ],
            "no [[source]] named \"nope\" (there are: nginx",
        ),
        (
            vec![file.to_str().unwrap(), "--format", "apache"],
            "--format \"apache\": expected combined, json",
        ),
    ];
    for (args, needle) in cases {
        let (ok, stdout, stderr) = check_routes(&args);
        assert!(!ok, "{args:?} must fail: {stdout}");
        assert!(stdout.is_empty(), "{args:?}: nothing printed: {stdout}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (ok, _, stderr) = check_routes(&[]);
    assert!(
        !ok && stderr.contains("FILE"),
        "the file is required: {stderr}"
    );
}
