//! Where notices go: the `[[notify]]` channels of the configuration file, and
//! a run's `--notify` list (channel names, `none`, or ad-hoc targets).

use serde::Deserialize;

use crate::policy::notices::NoticeKind;

/// One `[[notify]]` entry, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub name: String,
    /// A Slack incoming-webhook URL (Slack's message format).
    pub slack: Option<String>,
    /// A URL that gets the notice as JSON (POST).
    pub webhook: Option<String>,
    /// A shell command run with the notice as JSON on stdin and in
    /// `SHEPHERD_NOTICE_*` environment variables.
    pub command: Option<String>,
    /// An address mailed through the system's `sendmail`.
    pub email: Option<String>,
    /// Which notices: `completed`, `failed`, `recovered`, `banned` (all by
    /// default).
    pub events: Option<Vec<String>>,
    /// Used by runs that do not name channels with `--notify` (true by
    /// default).
    pub default: Option<bool>,
}

/// Where a channel sends; stored with each queued notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(tag = "type", content = "to", rename_all = "snake_case")]
pub enum Target {
    Slack(String),
    Webhook(String),
    Command(String),
    Email(String),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Slack(u) | Target::Webhook(u) => redact_url(u),
            Target::Command(c) => format!("command `{c}`"),
            Target::Email(a) => format!("mail to {a}"),
        }
    }
}

/// A webhook URL without its path: Slack's secret is the path.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{host}/…")
        }
        None => "webhook".into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub target: Target,
    pub events: Vec<NoticeKind>,
    pub default: bool,
}

impl Channel {
    pub fn wants(&self, kind: NoticeKind) -> bool {
        self.events.contains(&kind)
    }
}

/// Checks and converts the configured channels.
pub fn from_config(entries: &[NotifyConfig]) -> Result<Vec<Channel>, String> {
    let mut out: Vec<Channel> = Vec::new();
    for e in entries {
        let ctx = |m: String| format!("[[notify]] {:?}: {m}", e.name);
        if e.name.is_empty() || e.name.contains([',', ' ', ':']) || e.name == "none" {
            return Err(ctx(
                "name must be a word (no spaces, commas or colons), not \"none\"".into(),
            ));
        }
        if out.iter().any(|c| c.name == e.name) {
            return Err(ctx("two channels have this name".into()));
        }
        let targets: Vec<Target> = [
            e.slack.clone().map(Target::Slack),
            e.webhook.clone().map(Target::Webhook),
            e.command.clone().map(Target::Command),
            e.email.clone().map(Target::Email),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [target] = <[Target; 1]>::try_from(targets)
            .map_err(|_| ctx("give exactly one of slack, webhook, command or email".into()))?;
        check_target(&target).map_err(ctx)?;
        let events = match &e.events {
            None => NoticeKind::ALL.to_vec(),
            Some(list) => list
                .iter()
                .map(|s| {
                    NoticeKind::from_short(s).ok_or_else(|| {
                        ctx(format!(
                            "unknown event {s:?}; use completed, failed, recovered, banned or waiting"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        out.push(Channel {
            name: e.name.clone(),
            target,
            events,
            default: e.default.unwrap_or(true),
        });
    }
    Ok(out)
}

fn check_target(t: &Target) -> Result<(), String> {
    match t {
        Target::Slack(u) | Target::Webhook(u)
            if !(u.starts_with("https://") || u.starts_with("http://")) =>
        {
            Err(format!("{u:?} is not an http(s) URL"))
        }
        Target::Email(a) if !a.contains('@') || a.contains(char::is_whitespace) => {
            Err(format!("{a:?} is not an email address"))
        }
        Target::Command(c) if c.trim().is_empty() => Err("the command is empty".into()),
        _ => Ok(()),
    }
}

/// An ad-hoc `--notify` item: a URL (Slack's when the host is
/// hooks.slack.com) or `mailto:ADDRESS`.
fn ad_hoc(item: &str) -> Option<Target> {
    if let Some(addr) = item.strip_prefix("mailto:") {
        return Some(Target::Email(addr.to_string()));
    }
    if item.starts_with("https://hooks.slack.com/") {
        return Some(Target::Slack(item.to_string()));
    }
    (item.starts_with("https://") || item.starts_with("http://"))
        .then(|| Target::Webhook(item.to_string()))
}

/// The channels of a run: its `--notify` list, or the default channels.
pub fn for_run(configured: &[Channel], notify: Option<&[String]>) -> Result<Vec<Channel>, String> {
    let Some(items) = notify else {
        return Ok(configured.iter().filter(|c| c.default).cloned().collect());
    };
    let mut out = Vec::new();
    for item in items {
        if item == "none" {
            continue;
        }
        if let Some(c) = configured.iter().find(|c| &c.name == item) {
            out.push(c.clone());
        } else if let Some(target) = ad_hoc(item) {
            check_target(&target)?;
            out.push(Channel {
                name: item.clone(),
                target,
                events: NoticeKind::ALL.to_vec(),
                default: false,
            });
        } else {
            let names: Vec<&str> = configured.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "--notify {item:?} is not a configured channel ({}), a URL, mailto:ADDRESS or none",
                if names.is_empty() {
                    "none configured".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> NotifyConfig {
        NotifyConfig {
            name: name.into(),
            ..NotifyConfig::default()
        }
    }

    #[test]
    fn each_channel_has_one_target_and_known_events() {
        let mut slack = entry("team");
        slack.slack = Some("https://hooks.slack.com/services/T/B/secret".into());
        slack.events = Some(vec!["failed".into(), "recovered".into()]);
        let mut quiet = entry("hook");
        quiet.command = Some("cat >> ~/events".into());
        quiet.default = Some(false);
        let c = from_config(&[slack.clone(), quiet.clone()]).unwrap();
        assert_eq!(
            c[0].events,
            [NoticeKind::RunFailed, NoticeKind::RunRecovered]
        );
        assert!(c[0].wants(NoticeKind::RunFailed) && !c[0].wants(NoticeKind::RunCompleted));
        assert_eq!(c[0].target.describe(), "https://hooks.slack.com/…");
        assert_eq!(c[1].events.len(), NoticeKind::ALL.len());

        let mut two = entry("x");
        two.slack = slack.slack.clone();
        two.email = Some("a@b".into());
        assert!(from_config(&[two]).unwrap_err().contains("exactly one"));
        assert!(
            from_config(&[entry("x")])
                .unwrap_err()
                .contains("exactly one")
        );
        let mut bad = slack.clone();
        bad.events = Some(vec!["crashed".into()]);
        assert!(
            from_config(&[bad])
                .unwrap_err()
                .contains("unknown event \"crashed\"")
        );
        assert!(
            from_config(&[slack.clone(), slack.clone()])
                .unwrap_err()
                .contains("two channels")
        );
        let mut url = entry("u");
        url.webhook = Some("ftp://x".into());
        assert!(
            from_config(&[url])
                .unwrap_err()
                .contains("not an http(s) URL")
        );
    }

    #[test]
    fn a_runs_notify_list_picks_names_urls_and_none() {
        let mut team = entry("team");
        team.email = Some("team@lab.org".into());
        let mut hook = entry("hook");
        hook.command = Some("true".into());
        hook.default = Some(false);
        let c = from_config(&[team, hook]).unwrap();
        let names = |v: Vec<Channel>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names(for_run(&c, None).unwrap()), ["team"]);
        assert!(for_run(&c, Some(&["none".into()])).unwrap().is_empty());
        let picked = for_run(
            &c,
            Some(&[
                "hook".into(),
                "https://hooks.slack.com/services/x".into(),
                "mailto:me@uni.edu".into(),
            ]),
        )
        .unwrap();
        assert_eq!(picked[0].name, "hook");
        assert!(matches!(picked[1].target, Target::Slack(_)));
        assert_eq!(picked[2].target, Target::Email("me@uni.edu".into()));
        let err = for_run(&c, Some(&["slak".into()])).unwrap_err();
        assert!(err.contains("team, hook"), "{err}");
    }
}
