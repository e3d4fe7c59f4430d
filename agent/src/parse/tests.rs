//! Pipeline tests: defaults per format, the mapping options, spec checks,
//! failure accounting, and arbitrary input.

use panorama_model::{Layer, Outcome};
use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_795_392_000_000; // 2026-11-23T00:00:00Z
const T: i64 = 1_795_352_401_000; // 2026-11-22T13:00:01Z

fn pipeline(toml_spec: &str) -> Pipeline {
    let spec: ParseSpec = toml::from_str(toml_spec).unwrap();
    let mut p = Pipeline::new(spec, "web1").unwrap();
    p.set_clock(|| NOW);
    p
}

fn feed_all(p: &mut Pipeline, text: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for line in text.lines() {
        let _ = p.feed(line.as_bytes(), &mut out);
    }
    p.flush(&mut out);
    out
}

fn spec_err(toml_spec: &str) -> SpecError {
    let spec: ParseSpec = toml::from_str(toml_spec).unwrap();
    Pipeline::new(spec, "web1").unwrap_err()
}

#[test]
fn combined_defaults() {
    let mut p = pipeline("format = 'combined'\nservice = 'login'");
    let ev = feed_all(
        &mut p,
        r#"10.0.0.7 - - [22/Nov/2026:13:00:01 +0000] "GET /user/42/orders?page=2 HTTP/1.1" 200 512 "-" "curl/8.5" 0.012 0.010
10.0.0.7 - - [22/Nov/2026:13:00:01 +0000] "POST /api/login HTTP/1.1" 503 0 "-" "curl/8.5" 1.500 -
10.0.0.7 - - [22/Nov/2026:13:00:01 +0000] "GET /missing HTTP/1.1" 404 0 "-" "curl/8.5""#,
    );
    assert_eq!(ev.len(), 3);
    let e = &ev[0];
    assert_eq!(
        (e.ts_ms, e.layer, e.service.as_str(), e.host.as_str()),
        (T, Layer::Url, "login", "web1")
    );
    assert_eq!(
        (e.name.as_str(), &e.outcome, e.latency_ms, e.raw.as_deref()),
        ("GET /user/:num/orders", &Outcome::Ok, Some(12.0), None)
    );
    assert_eq!(ev[1].name, "POST /api/login");
    assert_eq!(ev[1].outcome, Outcome::Error(Some("503".into())));
    assert_eq!(ev[1].latency_ms, Some(1500.0));
    assert!(ev[1].raw.as_deref().unwrap().contains("POST /api/login"));
    // 404 is the caller's business by default...
    assert_eq!(
        (ev[2].outcome.clone(), ev[2].latency_ms),
        (Outcome::Ok, None)
    );
    // ...unless configured.
    let mut p =
        pipeline("format = 'nginx'\nservice = 'login'\nerror_status_from = 400\ndims = ['method']");
    let ev = feed_all(
        &mut p,
        r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET /missing HTTP/1.1" 404 0"#,
    );
    assert_eq!(ev[0].outcome, Outcome::Error(Some("404".into())));
    assert_eq!(ev[0].dims.get("method").map(String::as_str), Some("GET"));
}

#[test]
fn combined_options() {
    let mut p = pipeline(
        r#"format = "combined"
service = "shop"
series = "{method} {route} via {upstream_time|none}"
latency_field = "upstream_time"
latency_unit = "s"
value_field = "bytes"
routes = [{ pattern = '^/static/.*', replace = '/static/*' }]
"#,
    );
    let ev = feed_all(
        &mut p,
        r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET /static/app.3f2a9c01.js HTTP/1.1" 200 2048 "-" "ua" 0.5 0.25, 0.25"#,
    );
    assert_eq!(ev[0].name, "GET /static/* via 0.5");
    assert_eq!((ev[0].latency_ms, ev[0].value), (Some(500.0), Some(2048.0)));
    let mut p = pipeline("format = 'combined'\nservice = 's'\nlatency_field = ''");
    let ev = feed_all(
        &mut p,
        r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" 0.5"#,
    );
    assert_eq!(ev[0].latency_ms, None);
}

#[test]
fn json_defaults_and_paths() {
    let mut p = pipeline("format = 'json'\nservice = 'login'\ndims = ['channel', 'device.model']");
    let ev = feed_all(
        &mut p,
        r#"{"ts":"2026-11-22T13:00:01Z","name":"login","ok":true,"latency_ms":35.5,"channel":"ios","device":{"model":"iPhone15"}}
{"ts":1795352401000,"layer":"call","name":"account-svc getUser","ok":false,"code":1001}
{"time":"2026-11-22T21:00:01+08:00","name":"pay","level":"ERROR","value":3}
{"ts":"2026-11-22T13:00:01Z","name":"x","ok":"maybe"}
{"ts":"2026-11-22T13:00:01Z","layer":"web","name":"x"}
{"ts":"soon","name":"x"}
{"name":"x"}
{"ts":"2026-11-22T13:00:01Z"}
not json"#,
    );
    assert_eq!(ev.len(), 3);
    assert_eq!(
        (ev[0].layer, ev[0].name.as_str(), ev[0].latency_ms),
        (Layer::Business, "login", Some(35.5))
    );
    assert_eq!(ev[0].dims.len(), 2);
    assert_eq!(ev[0].dims["device.model"], "iPhone15");
    assert_eq!((ev[1].layer, ev[1].ts_ms), (Layer::Call, T));
    assert_eq!(ev[1].outcome, Outcome::Error(Some("1001".into())));
    assert_eq!((ev[2].ts_ms, ev[2].value), (T, Some(3.0)));
    assert_eq!(ev[2].outcome, Outcome::Error(Some("error".into())));
    let stats = p.stats();
    assert_eq!((stats.lines, stats.events, stats.failed), (9, 3, 6));
    let samples = p.take_failed_samples();
    assert_eq!(samples.len(), MAX_FAILED_SAMPLES);
    assert!(
        samples[0].failure.expected.contains("`ok`"),
        "{}",
        samples[0].failure
    );
    assert!(
        samples[1].failure.expected.contains("`layer`"),
        "{}",
        samples[1].failure
    );
    assert!(
        samples[2].failure.expected.contains("field `ts`"),
        "{}",
        samples[2].failure
    );
    assert!(
        samples[3].failure.expected.contains("`ts` or `time`"),
        "{}",
        samples[3].failure
    );
    assert!(
        samples[4].failure.expected.contains("field `name`"),
        "{}",
        samples[4].failure
    );
    assert!(p.take_failed_samples().is_empty());
}

#[test]
fn syslog_defaults() {
    let mut p = pipeline("format = 'syslog'\nservice = 'os'\ntimezone = 'UTC'");
    let ev = feed_all(
        &mut p,
        "<11>Nov 22 13:00:01 web1 kernel: I/O error, dev sda\n\
         <30>1 2026-11-22T13:00:01Z web1 nginx 88 - - started\n\
         Nov 22 13:00:01 web1 last message repeated 2 times",
    );
    assert_eq!(ev.len(), 3);
    assert_eq!(
        (ev[0].layer, ev[0].name.as_str(), ev[0].ts_ms),
        (Layer::Infra, "kernel", T)
    );
    assert_eq!(ev[0].outcome, Outcome::Error(Some("err".into())));
    assert_eq!(
        (ev[1].name.as_str(), &ev[1].outcome),
        ("nginx", &Outcome::Ok)
    );
    assert_eq!(ev[2].name, "syslog");
}

#[test]
fn redis_and_mysql_defaults() {
    let mut p = pipeline("format = 'redis'\nservice = 'cache'\ntimezone = '+00:00'");
    let ev = feed_all(
        &mut p,
        "1:M 22 Nov 2026 13:00:01.000 * Ready to accept connections\n\
         1:M 22 Nov 2026 13:00:01.000 # MISCONF Redis is configured to save RDB snapshots",
    );
    assert_eq!(
        (ev[0].layer, ev[0].name.as_str(), &ev[0].outcome),
        (Layer::Component, "redis", &Outcome::Ok)
    );
    assert_eq!(ev[1].outcome, Outcome::Error(Some("warning".into())));

    let mut p = pipeline(
        "format = 'mysql_slow'\nservice = 'db'\nseries = 'mysql@{host} slow {statement|query}'\ndims = ['db']",
    );
    let mut out = Vec::new();
    for line in [
        "# Time: 2026-11-22T13:00:01.000000Z",
        "# User@Host: app[app] @ web1 [10.0.0.5]  Id:    12",
        "# Query_time: 2.5  Lock_time: 0.0 Rows_sent: 1  Rows_examined: 9",
        "use shop;",
        "SET timestamp=1795352401;",
        "select 1;",
    ] {
        p.feed(line.as_bytes(), &mut out).unwrap();
    }
    assert!(out.is_empty());
    assert_eq!(p.pending_lines(), 6);
    p.flush(&mut out);
    assert_eq!(p.pending_lines(), 0);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].name.as_str(), out[0].latency_ms, out[0].ts_ms),
        ("mysql@web1 slow select", Some(2500.0), T)
    );
    assert_eq!(out[0].dims["db"], "shop");
    // A record with no time at all fails when it completes.
    let _ = p.feed(b"# User@Host: app[app] @ web1 [10.0.0.5]  Id: 1", &mut out);
    p.flush(&mut out);
    assert_eq!((p.stats().failed, p.stats().events), (1, 1));
    assert!(p.take_failed_samples()[0].line.starts_with("# User@Host"));
}

#[test]
fn regex_mapping_and_checks() {
    let spec = r#"format = "regex"
service = "login"
layer = "call"
pattern = '^(?P<ts>\S+) (?P<target>[\w-]+) (?P<method>\w+) cost=(?P<latency_ms>\d+)ms ok=(?P<ok>\w+)(?: code=(?P<code>\w+))?'
series = "{target} {method}"
"#;
    let mut p = pipeline(spec);
    let ev = feed_all(
        &mut p,
        "2026-11-22T13:00:01Z account-svc getUser cost=12ms ok=true\n\
         2026-11-22T13:00:01Z account-svc getUser cost=900ms ok=false code=TIMEOUT\n\
         garbage",
    );
    assert_eq!(ev.len(), 2);
    assert_eq!(
        (
            ev[0].layer,
            ev[0].name.as_str(),
            ev[0].latency_ms,
            ev[0].ts_ms
        ),
        (Layer::Call, "account-svc getUser", Some(12.0), T)
    );
    assert_eq!(ev[1].outcome, Outcome::Error(Some("TIMEOUT".into())));
    assert_eq!(p.stats().failed, 1);

    let e = spec_err(&spec.replace("layer = \"call\"\n", ""));
    assert_eq!(e.option, "layer");
    let e = spec_err(&spec.replace("{target} {method}", "{target} {verb}"));
    assert_eq!(e.option, "series");
    assert!(e.to_string().contains("`{verb}`"), "{e}");
    let e = spec_err(&format!("{spec}dims = ['channel']"));
    assert_eq!(e.option, "dims");
    let e = spec_err(&spec.replace("(?P<ts>", "(?P<when>"));
    assert_eq!(e.option, "pattern");
    let e = spec_err(&format!("{spec}status_field = 'status'"));
    assert_eq!(e.option, "status_field");
    // A `path` capture gives `{route}`; no `series` needs a `name` capture.
    let p = r#"format = "regex"
service = "s"
layer = "url"
pattern = '(?P<ts>\S+) (?P<path>\S+)'
"#;
    assert_eq!(spec_err(p).option, "pattern");
    let mut p = pipeline(&format!("{p}series = 'GET {{route}}'"));
    assert_eq!(
        feed_all(&mut p, "2026-11-22T13:00:01Z /u/77?x")[0].name,
        "GET /u/:num"
    );
}

#[test]
fn spec_errors_name_the_option() {
    let base = "service = 's'\n";
    assert_eq!(
        spec_err(&format!("{base}format = 'regex'")).option,
        "pattern"
    );
    assert_eq!(
        spec_err(&format!("{base}format = 'regex'\npattern = '('")).option,
        "pattern"
    );
    assert_eq!(
        spec_err(&format!("{base}format = 'combined'\npattern = 'x'")).option,
        "pattern"
    );
    assert_eq!(
        spec_err(&format!("{base}format = 'syslog'\nts_field = 'x'")).option,
        "ts_field"
    );
    assert_eq!(
        spec_err(&format!("{base}format = 'json'\nseries = '{{name'")).option,
        "series"
    );
    assert_eq!(
        spec_err(&format!("{base}format = 'json'\nmax_series = 0")).option,
        "max_series"
    );
    assert_eq!(
        spec_err(&format!("{base}format = 'json'\ntimezone = 'Mars/Base'")).option,
        "timezone"
    );
    assert_eq!(
        spec_err(&format!(
            "{base}format = 'json'\nroutes = [{{ pattern = '[', replace = '' }}]"
        ))
        .option,
        "routes"
    );
    let dims: Vec<String> = (0..17).map(|i| format!("'d{i}'")).collect();
    assert_eq!(
        spec_err(&format!(
            "{base}format = 'json'\ndims = [{}]",
            dims.join(",")
        ))
        .option,
        "dims"
    );
    assert_eq!(spec_err("format = 'json'\nservice = ' '").option, "service");
    // Unknown options and formats are serde's to reject.
    assert!(toml::from_str::<ParseSpec>("format = 'json'\nservice = 's'\nlatency = 'x'").is_err());
    assert!(toml::from_str::<ParseSpec>("format = 'csv'\nservice = 's'").is_err());
    assert_eq!("mysql_slow".parse::<Format>(), Ok(Format::MysqlSlow));
    assert_eq!("nginx".parse::<Format>(), Ok(Format::Combined));
    assert_eq!("csv".parse::<Format>().unwrap_err().option, "format");
    for f in Format::ALL {
        assert_eq!(f.to_string().parse::<Format>(), Ok(f));
    }
}

#[test]
fn cap_sends_overflow_to_other() {
    let mut p = pipeline("format = 'combined'\nservice = 's'\nmax_series = 3");
    let mut out = Vec::new();
    for word in ["a", "b", "c", "d", "e", "a"] {
        let line =
            format!(r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET /{word} HTTP/1.1" 200 1"#);
        p.feed(line.as_bytes(), &mut out).unwrap();
    }
    let names: Vec<&str> = out.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /a",
            "GET /b",
            "GET /c",
            OTHER_SERIES,
            OTHER_SERIES,
            "GET /a"
        ]
    );
    assert_eq!(p.stats().overflowed_series, 2);
    assert_eq!(p.stats().events, 6);
}

#[test]
fn bad_lines_are_counted_sampled_and_survived() {
    let mut p = pipeline("format = 'combined'\nservice = 's'");
    let mut out = Vec::new();
    let good = br#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET / HTTP/1.1" 200 1"#;
    for i in 0..20 {
        let _ = p.feed(format!("junk {i}").as_bytes(), &mut out);
        p.feed(good, &mut out).unwrap();
    }
    p.feed(b"\r\n", &mut out).unwrap();
    let s = p.stats();
    assert_eq!((s.lines, s.events, s.failed, s.skipped), (41, 20, 20, 1));
    let samples = p.take_failed_samples();
    assert_eq!(samples.len(), MAX_FAILED_SAMPLES);
    assert_eq!(samples[0].line, "junk 0");
    assert_eq!(samples[0].failure.at, 5);
    assert_eq!(
        samples[0].failure.to_string(),
        "byte 5: expected the ident field (usually `-`), then a space"
    );
    let _ = p.feed(b"junk again", &mut out);
    assert_eq!(p.take_failed_samples()[0].line, "junk again");
}

#[test]
fn invalid_utf8_is_replaced() {
    let mut p = pipeline("format = 'combined'\nservice = 's'");
    let mut out = Vec::new();
    let mut line = br#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET /caf"#.to_vec();
    line.extend_from_slice(b"\xff\xfe/9 HTTP/1.1\" 500 1\n");
    p.feed(&line, &mut out).unwrap();
    assert_eq!(out[0].name, "GET /caf\u{fffd}\u{fffd}/:num");
    assert!(out[0].raw.as_deref().unwrap().contains('\u{fffd}'));
    let _ = p.feed(b"\xff\xff\xff", &mut out);
    assert_eq!(p.take_failed_samples()[0].line, "\u{fffd}\u{fffd}\u{fffd}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..8)) {
        for f in Format::ALL {
            let mut spec = ParseSpec::new(f, "s");
            if f == Format::Regex {
                spec.pattern = Some(r"(?P<ts>\S+) (?P<name>\S+)(?: (?P<method>\S+))?(?: (?P<level>\S+))?".into());
                spec.layer = Some(Layer::Call);
            }
            spec.dims = vec!["method".into(), "level".into()];
            let mut p = Pipeline::new(spec, "h").unwrap();
            let mut out = Vec::new();
            for l in &lines {
                let _ = p.feed(l, &mut out);
            }
            p.flush(&mut out);
            let s = p.stats();
            prop_assert_eq!(s.events, out.len() as u64);
            prop_assert!(s.failed + s.events <= s.lines + 1);
        }
    }

    #[test]
    fn mangled_real_lines_never_panic(cut in 0usize..200, pos in 0usize..200, byte in any::<u8>()) {
        let samples: [(Format, &str); 5] = [
            (Format::Combined, r#"10.0.0.7 - - [22/Nov/2026:13:00:01 +0000] "GET /user/42 HTTP/1.1" 502 512 "-" "curl" rt=0.1 urt="0.1, 0.2""#),
            (Format::Json, r#"{"ts":"2026-11-22T13:00:01Z","name":"login","ok":false,"latency_ms":3}"#),
            (Format::Syslog, r#"<165>1 2026-11-22T13:00:01.003Z web1 app - ID47 [x@1 a="b\]"] msg"#),
            (Format::Redis, "1:M 22 Nov 2026 13:00:01.123 # x"),
            (Format::MysqlSlow, "# Query_time: 2.5  Lock_time: 0.0 Rows_sent: 1"),
        ];
        for (f, line) in samples {
            let mut bytes = line.as_bytes().to_vec();
            if pos < bytes.len() {
                bytes[pos] = byte;
            }
            bytes.truncate(cut);
            let mut p = Pipeline::new(ParseSpec::new(f, "s"), "h").unwrap();
            let mut out = Vec::new();
            let _ = p.feed(b"# Time: 2026-11-22T13:00:01Z", &mut out);
            let _ = p.feed(&bytes, &mut out);
            p.flush(&mut out);
        }
    }

    #[test]
    fn pipeline_cap_holds(max in 1usize..10, paths in prop::collection::vec("[a-z]{1,2}", 1..100)) {
        let mut spec = ParseSpec::new(Format::Combined, "s");
        spec.max_series = Some(max);
        let mut p = Pipeline::new(spec, "h").unwrap();
        let mut out = Vec::new();
        for path in &paths {
            let line = format!(r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET /{path} HTTP/1.1" 200 1"#);
            p.feed(line.as_bytes(), &mut out).unwrap();
        }
        let names: std::collections::HashSet<&str> = out.iter().map(|e| e.name.as_str()).collect();
        prop_assert!(names.len() <= max + 1);
        prop_assert_eq!(out.len(), paths.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Recycled events carry nothing over: feeding through a pipeline that
    /// reuses shipped events gives exactly what a fresh pipeline gives.
    #[test]
    fn recycled_events_equal_fresh_ones(
        picks in prop::collection::vec((0usize..4, 0usize..4, 0u32..1000), 1..40),
        batch in 1usize..7,
    ) {
        let paths = ["/user/42/orders?page=2", "/api/login", "/o/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/x"];
        let tails = [r#"200 512 "-" "curl/8.5" 0.012 0.010"#, r#"503 0 "-" "ua" 1.5"#, "404 -", r#"500 1 "-" "-" rt=0.2 app=a"#];
        let lines: Vec<String> = picks
            .iter()
            .map(|(p, t, n)| format!(r#"10.0.0.{n} - - [22/Nov/2026:13:00:01 +0000] "GET {}{n} HTTP/1.1" {}"#, paths[*p], tails[*t]))
            .collect();
        let spec = || {
            let mut s = ParseSpec::new(Format::Combined, "login");
            s.dims = vec!["app".into()];
            s
        };
        let mut fresh = Pipeline::new(spec(), "web1").unwrap();
        let mut expected = Vec::new();
        for l in &lines {
            let _ = fresh.feed(l.as_bytes(), &mut expected);
        }
        let mut reusing = Pipeline::new(spec(), "web1").unwrap();
        let mut got = Vec::new();
        for chunk in lines.chunks(batch) {
            let mut events = Vec::new();
            for l in chunk {
                let _ = reusing.feed(l.as_bytes(), &mut events);
            }
            got.extend(events.iter().cloned());
            reusing.recycle(&mut events);
            prop_assert!(events.is_empty());
        }
        prop_assert_eq!(got, expected);
    }
}
