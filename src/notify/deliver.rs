//! Sending one notice to one channel, time-bounded. Webhooks go through the
//! system's `curl` (so the site's proxy and CA settings apply, and no TLS
//! stack is built into Shepherd), mail through `sendmail`, hooks through
//! `sh -c`.

use std::time::Duration;

use serde_json::{Value, json};

use super::channels::Target;
use super::outbox::Entry;
use crate::proc::Invocation;

/// Version of the notification JSON (webhook body, command stdin).
pub const NOTICE_SCHEMA_VERSION: u32 = 1;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The documented notification document.
pub fn document(entry: &Entry) -> Value {
    let mut v = serde_json::to_value(&entry.notice).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("schema_version".into(), json!(NOTICE_SCHEMA_VERSION));
        m.insert("cluster".into(), json!(entry.cluster));
    }
    v
}

/// The notice for people: a headline and one line per fact.
pub fn text(entry: &Entry) -> String {
    let n = &entry.notice;
    let mut s = format!("[shepherd] {}", n.summary);
    for d in &n.details {
        s.push_str(&format!("\n• {d}"));
    }
    if let Some(c) = &entry.cluster {
        s.push_str(&format!("\ncluster: {c}"));
    }
    s
}

/// Slack's incoming-webhook message.
pub fn slack_payload(entry: &Entry) -> Value {
    let n = &entry.notice;
    let mut body = n
        .details
        .iter()
        .map(|d| format!("• {d}"))
        .collect::<Vec<_>>();
    if let Some(c) = &entry.cluster {
        body.push(format!("_cluster {c}_"));
    }
    json!({
        "text": text(entry),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", n.summary)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": if body.is_empty() { " ".to_string() } else { body.join("\n") }}]}
        ]
    })
}

/// Sends; `Err` says why not, for the log and the retry.
pub fn send(target: &Target, entry: &Entry) -> Result<(), String> {
    match target {
        Target::Slack(url) => post(url, &slack_payload(entry)),
        Target::Webhook(url) => post(url, &document(entry)),
        Target::Command(cmd) => command(cmd, entry),
        Target::Email(addr) => email(addr, entry),
    }
}

fn post(url: &str, body: &Value) -> Result<(), String> {
    let secs = WEBHOOK_TIMEOUT.as_secs().to_string();
    let inv = Invocation::new("curl", WEBHOOK_TIMEOUT + Duration::from_secs(5))
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            &secs,
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
            "--header",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            "--",
            url,
        ])
        .stdin(body.to_string());
    let out = inv.run().map_err(|e| e.to_string())?;
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "curl {}: {} (HTTP {})",
            out.status_text(),
            out.stderr.trim(),
            out.stdout.trim()
        ))
    }
}

fn command(cmd: &str, entry: &Entry) -> Result<(), String> {
    let n = &entry.notice;
    let mut inv = Invocation::new("sh", COMMAND_TIMEOUT)
        .args(["-c", cmd])
        .stdin(document(entry).to_string());
    let vars = [
        ("SHEPHERD_NOTICE_ID", n.id.clone()),
        ("SHEPHERD_NOTICE_KIND", kind_name(entry)),
        ("SHEPHERD_NOTICE_SUMMARY", n.summary.clone()),
        ("SHEPHERD_NOTICE_TEXT", text(entry)),
        ("SHEPHERD_RUN_ID", n.run_id.clone().unwrap_or_default()),
        ("SHEPHERD_RUN_STATUS", n.status.clone().unwrap_or_default()),
        (
            "SHEPHERD_CLUSTER",
            entry.cluster.clone().unwrap_or_default(),
        ),
    ];
    inv.env
        .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
    let out = inv.run().map_err(|e| e.to_string())?;
    if out.success() {
        Ok(())
    } else {
        Err(format!("command {}: {}", out.status_text(), out.message()))
    }
}

fn kind_name(entry: &Entry) -> String {
    serde_json::to_value(entry.notice.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn email(addr: &str, entry: &Entry) -> Result<(), String> {
    let sendmail = ["/usr/sbin/sendmail", "/usr/lib/sendmail"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("sendmail");
    let subject: String = format!("[shepherd] {}", entry.notice.summary)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let message = format!(
        "To: {addr}\nSubject: {subject}\nContent-Type: text/plain; charset=utf-8\nX-Shepherd-Notice: {}\n\n{}\n",
        entry.notice.id,
        text(entry)
    );
    let out = Invocation::new(sendmail, COMMAND_TIMEOUT)
        .args(["-t", "-oi"])
        .stdin(message)
        .run()
        .map_err(|e| e.to_string())?;
    if out.success() {
        Ok(())
    } else {
        Err(format!("sendmail {}: {}", out.status_text(), out.message()))
    }
}
