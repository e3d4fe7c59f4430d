//! `panorama demo`: the whole system on one machine with nothing else
//! installed. A simulated game service writes five kinds of log, the agent
//! (in this process) tails them and the host's own metrics, the collector
//! stores them in the embedded store, demo rules watch every layer, and an
//! incident injected after a few minutes makes them fire; the mail lands as
//! `.eml` files in a mailbox directory (and on an SMTP server if given).

mod simulator;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use panorama_collector::CollectorConfig;
use panorama_collector::config::{
    AuthSection, CollectorSettings, DEFAULT_COLLECTOR_ID, StoreChoice,
};
use panorama_dashboard::DashboardConfig;
use panorama_dashboard::config::{Role, User};
use panorama_rules::config::RulesConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;

/// `panorama demo` options.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Where the demo keeps its logs, data, rules and mailbox.
    #[arg(long, default_value = "./panorama-demo")]
    dir: PathBuf,
    /// Address of the dashboard and the collector.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Seconds of healthy traffic before the incident.
    #[arg(long, default_value_t = 180)]
    incident_after_secs: u64,
    /// Seconds the incident lasts.
    #[arg(long, default_value_t = 180)]
    incident_secs: u64,
    /// Seconds before the sessions Redis hangs (a probe sees it first;
    /// logins fail with it).
    #[arg(long, default_value_t = 90)]
    redis_outage_after_secs: u64,
    /// Seconds the Redis outage lasts.
    #[arg(long, default_value_t = 60)]
    redis_outage_secs: u64,
    /// Also mail alerts through this SMTP server (plain, no auth).
    #[arg(long, value_name = "HOST:PORT")]
    smtp: Option<String>,
    /// Recipient of the SMTP mail.
    #[arg(long, value_name = "ADDRESS", default_value = "on-duty@localhost")]
    mail_to: String,
}

/// What the demo started besides the collector.
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Stops the simulator and the agent (which checkpoints).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            match t.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "demo task ended with an error"),
                Err(e) => tracing::warn!(error = %e, "demo task panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

fn rules(mailbox: &Path, smtp: Option<(&str, u16, &str)>) -> String {
    let mut out = format!(
        r#"# The demo's rules: one per layer the incident touches, and a silent host.

[[rule]]
name = "payment-gateway-slow"
layer = "call"
series = "payment-gateway"
window = "1m"
when = "p90 > 1s"
min_count = 10
severity = "critical"
summary = "{{{{service}}}} → {{{{series}}}}: p90 {{{{value}}}} (threshold {{{{threshold}}}})"

[[rule]]
name = "payment-gateway-errors"
layer = "call"
series = "payment-gateway"
window = "1m"
when = "error_ratio > 10%"
min_count = 20
severity = "critical"
summary = "{{{{service}}}} → {{{{series}}}}: {{{{value}}}} of calls fail"

[[rule]]
name = "pay-route-errors"
layer = "url"
series = "POST /api/pay"
window = "1m"
when = "error_ratio > 5%"
min_count = 20
severity = "critical"
summary = "{{{{series}}}}: {{{{value}}}} of requests fail"

[[rule]]
name = "payments-failing"
layer = "business"
series = "payment"
window = "1m"
when = "error_ratio > 10%"
min_count = 10
severity = "warning"
summary = "payments: {{{{value}}}} fail"

[[rule]]
name = "host-silent"
layer = "infra"
series = "agent.heartbeat"
group_by = "host"
window = "2m"
when = "absent"
severity = "critical"
summary = "{{{{host}}}} has sent nothing for 2 minutes"

[[rule]]
name = "sessions-redis-down"
layer = "component"
series = "redis@sessions ping"
# Windows are whole (sliding) minutes; the probe runs every 2 s, so 5
# failed runs in the last minute are 10 s without an answer: soon enough
# to be named, in the first page, as the cause of the failing logins
# (the route's group_wait is 30 s).
window = "1m"
when = "errors >= 5"
min_count = 3
severity = "critical"
summary = "{{{{series}}}}: the sessions Redis has not answered for 10 s (its log is still quiet)"

[[rule]]
name = "sessions-calls-failing"
layer = "call"
series = "redis:sessions"
window = "1m"
when = "error_ratio > 10%"
min_count = 20
severity = "critical"
summary = "{{{{service}}}} → {{{{series}}}}: {{{{value}}}} of calls fail"

[[rule]]
name = "login-route-errors"
layer = "url"
series = "POST /api/login"
window = "1m"
when = "error_ratio > 5%"
min_count = 20
# A route is a symptom: held 20 s, it fires after the alerts of what broke
# it (the Redis probe's, the session calls'), and so joins their incident.
# Fired in its first seconds, while the payment gateway's incident is open,
# it would join that one, the only cause known yet that explains it.
for = "20s"
severity = "critical"
summary = "{{{{series}}}}: {{{{value}}}} of requests fail"

[[receiver]]
name = "mailbox"
[receiver.mailbox]
dir = "{}"
to = ["on-duty@localhost"]

[[route]]
receivers = ["mailbox"{}]
# Long enough for the call, url and business alerts of one fault to fire
# and go out as one incident.
group_wait = "30s"
group_interval = "1m"
repeat_interval = "1h"
"#,
        mailbox.display(),
        if smtp.is_some() { ", \"smtp\"" } else { "" }
    );
    if let Some((host, port, to)) = smtp {
        out.push_str(&format!(
            r#"
[[receiver]]
name = "smtp"
[receiver.mail]
host = "{host}"
port = {port}
security = "plain"
from = "Panorama demo <panorama@localhost>"
to = ["{to}"]
"#
        ));
    }
    out
}

fn agent_config(
    dir: &Path,
    logs: &simulator::Logs,
    listen: SocketAddr,
    redis: SocketAddr,
) -> String {
    let mut out = format!(
        "data_dir = \"{}\"\n\n[collector]\nurls = [\"http://{listen}\"]\n\n[host_metrics]\ninterval_secs = 10\n",
        dir.join("agent").display()
    );
    // (source, file, format, extra parse keys)
    let sources: [(&str, &Path, &str, &str); 5] = [
        ("nginx", &logs.access, "combined", ""),
        ("events", &logs.events, "json", "dims = [\"model\"]\n"),
        ("calls", &logs.calls, "json", ""),
        (
            "mysql-slow",
            &logs.mysql,
            "mysql_slow",
            "timezone = \"UTC\"\n",
        ),
        ("redis", &logs.redis, "redis", "timezone = \"UTC\"\n"),
    ];
    for (name, path, format, extra) in sources {
        out.push_str(&format!(
            "\n[[source]]\nname = \"{name}\"\npaths = [\"{}\"]\n[source.parse]\nformat = \"{format}\"\nservice = \"game\"\n{extra}",
            path.display()
        ));
    }
    // The sessions Redis writes nothing while it hangs; its probe says so.
    out.push_str(&format!(
        "\n[[probe]]\nname = \"sessions\"\nkind = \"redis\"\ntarget = \"{redis}\"\ninterval = \"2s\"\ntimeout = \"1s\"\njitter = \"200ms\"\nservice = \"game\"\n"
    ));
    out
}

/// Prepares the demo directory, starts the simulator and the agent, and
/// returns the configuration of the collector that serves the rest.
pub(crate) async fn start(args: &DemoArgs) -> anyhow::Result<(Config, Running)> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("demo directory {}", args.dir.display()))?;
    for sub in ["logs", "rules", "data", "agent", "mailbox"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let smtp = match &args.smtp {
        Some(s) => {
            let (host, port) = s
                .rsplit_once(':')
                .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h, p)))
                .with_context(|| format!("--smtp {s:?}: expected HOST:PORT"))?;
            Some((host, port, args.mail_to.as_str()))
        }
        None => None,
    };
    let rules_dir = dir.join("rules");
    std::fs::write(
        rules_dir.join("demo.toml"),
        rules(&dir.join("mailbox"), smtp),
    )?;
    let logs = simulator::Logs::under(&dir.join("logs"));
    let redis_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("the simulated Redis's port")?;
    let redis_addr = redis_listener.local_addr()?;
    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        agent_config(&dir, &logs, args.listen, redis_addr),
    )?;
    let agent_cfg = panorama_agent::config::AgentConfig::load(&agent_toml)
        .with_context(|| format!("the demo's agent config {}", agent_toml.display()))?;

    let (stop, stopped) = watch::channel(false);
    let schedule = simulator::Schedule {
        incident_after: Duration::from_secs(args.incident_after_secs),
        incident_for: Duration::from_secs(args.incident_secs),
        redis_after: Duration::from_secs(args.redis_outage_after_secs),
        redis_for: Duration::from_secs(args.redis_outage_secs),
    };
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(simulator::fake_redis(
        redis_listener,
        schedule,
        std::time::Instant::now(),
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(simulator::run(
        logs,
        schedule,
        stopped.clone(),
    )));
    let figures = Arc::new(panorama_agent::run::AgentFigures::default());
    tasks.push(tokio::spawn(panorama_agent::run::run(
        agent_cfg, figures, stopped,
    )));

    let hash = panorama_dashboard::hash_password("demo")?;
    let url = format!("http://{}", args.listen);
    eprintln!(
        "\nPanorama demo\n\
         \x20 dashboard  {url}/   (user demo, password demo)\n\
         \x20 logs       {logs}/   (a simulated game service; the built-in agent tails them)\n\
         \x20 mailbox    {mail}/   (alert mails as .eml files{smtp})\n\
         \x20 incident   in {after} s: the payment gateway slows down and fails, for {dur} s\n\
         \x20 redis      in {redis_after} s: the sessions Redis hangs for {redis_for} s; its probe\n\
         \x20            (redis@sessions ping) fails at once, its log only {log_delay} s later;\n\
         \x20            logins time out on it (redis:sessions calls, POST /api/login)\n\n\
         What to look at: the overview's call layer turns red first (payment-gateway p90\n\
         and errors), then url (POST /api/pay) and business (payment); the Alerts page\n\
         lists them and the mails appear in the mailbox within a minute, one per\n\
         incident, naming its probable cause (the gateway call; the Redis component\n\
         for the failing logins). Ctrl-C stops.\n",
        logs = dir.join("logs").display(),
        mail = dir.join("mailbox").display(),
        smtp = args
            .smtp
            .as_ref()
            .map(|s| format!(", and via SMTP at {s}"))
            .unwrap_or_default(),
        after = args.incident_after_secs,
        redis_after = args.redis_outage_after_secs,
        redis_for = args.redis_outage_secs,
        log_delay = simulator::REDIS_LOG_DELAY.as_secs(),
        dur = args.incident_secs,
    );
    let collector = CollectorSettings {
        listen: args.listen,
        store: StoreChoice::Sqlite,
        collector: CollectorConfig::new(DEFAULT_COLLECTOR_ID, dir.join("data")),
        // No tokens: open, and so served only on loopback.
        auth: AuthSection::default(),
        tls: None,
    };
    let rules = RulesConfig {
        dir: rules_dir,
        dashboard_url: Some(url),
    };
    let dashboard = DashboardConfig::new(vec![User {
        name: "demo".into(),
        password_hash: hash,
        role: Role::Operator,
    }]);
    let config = Config {
        collector,
        rules: Some(rules),
        dashboard: Some(dashboard),
    };
    Ok((config, Running { stop, tasks }))
}
