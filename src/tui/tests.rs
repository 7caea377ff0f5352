//! Snapshots of every screen drawn from fixed data at a fixed `now` (so ages
//! and times are stable), and the key handling: selection, filter, sort,
//! confirmations.

use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::app::{App, Confirm, Effect, Mode, Msg, PromptKind, Screen, Sort, Tab, update};
use super::data::{ClusterSnapshot, DetailRequest, DetailUpdate, LogChunk, RunExtra, RunRow};
use super::loaders::LogFollower;
use super::render::render;
use crate::model::Mode as RunMode;
use crate::placement::inventory::PartitionGpus;
use crate::policy::decide::Control;
use crate::store::logs::Stream;
use crate::store::runs::JournalEntry;
use crate::view::nodes::{BanDoc, NodeDoc, NodesDoc};
use crate::view::{AttemptDoc, RunDoc};

fn now() -> Timestamp {
    "2026-01-15T12:00:00Z".parse().unwrap()
}

fn ago(secs: i64) -> Timestamp {
    now() - jiff::SignedDuration::from_secs(secs)
}

fn attempt(k: u32, node: &str, outcome: Option<(&str, &str, &str)>, start: i64) -> AttemptDoc {
    AttemptDoc {
        attempt: k,
        job_id: Some(100 + u64::from(k)),
        phase: if outcome.is_some() {
            "ended"
        } else {
            "running"
        }
        .into(),
        partition: Some("a100".into()),
        node: Some(node.into()),
        restarts: 0,
        submitted_at: ago(start + 30),
        running_since: Some(ago(start)),
        ended_at: outcome.map(|_| ago(start - 600)),
        outcome: outcome.map(|o| o.0.into()),
        blame: outcome.map(|o| o.1.into()),
        slurm_state: outcome.map(|_| "FAILED".into()),
        exit_code: outcome.map(|_| 1),
        detail: outcome.map(|o| o.2.into()),
        fingerprint: None,
        probes: vec![],
        in_place: 0,
        in_job_of: None,
    }
}

fn run(id: &str, status: &str, created: i64, attempts: Vec<AttemptDoc>) -> RunRow {
    let last = attempts.last();
    RunRow {
        doc: RunDoc {
            run_id: id.into(),
            status: status.into(),
            reason: format!("the run is {status}"),
            mode: RunMode::RunOnce,
            paused: status == "paused",
            slurm_job_id: last.and_then(|a| a.job_id),
            node: last.and_then(|a| a.node.clone()),
            partition: last.and_then(|a| a.partition.clone()),
            workload_failures: 0,
            max_retries: 3,
            created_at: ago(created),
            updated_at: ago(5),
            run_dir: PathBuf::from(format!("/state/runs/{id}")),
            attempts,
            error: None,
        },
        heartbeat: Some(ago(12)),
    }
}

fn runs() -> Vec<RunRow> {
    vec![
        run(
            "train",
            "running",
            7200,
            vec![
                attempt(
                    1,
                    "a100-1",
                    Some(("node_fault", "node", "Xid 79: GPU fell off the bus")),
                    7000,
                ),
                attempt(2, "a100-2", None, 1800),
            ],
        ),
        run(
            "sweep-3",
            "completed",
            90_000,
            vec![attempt(
                1,
                "a100-3",
                Some(("success", "none", "exit 0")),
                80_000,
            )],
        ),
        run("eval", "pending", 300, vec![]),
        run(
            "finetune",
            "failed",
            20_000,
            vec![attempt(
                1,
                "a100-4",
                Some(("workload_failure", "workload", "exit code 1")),
                15_000,
            )],
        ),
    ]
}

fn node(name: &str, state: &str, free: u32, ban: Option<&str>) -> NodeDoc {
    NodeDoc {
        name: name.into(),
        state: state.into(),
        usable: state == "IDLE" || state == "MIXED",
        partitions: vec!["a100".into(), "all".into()],
        gpu_type: Some("a100".into()),
        gpus: 4,
        gpus_free: free,
        switch: Some("sw1".into()),
        admin_reason: (state == "DOWN").then(|| "bad PSU".into()),
        banned: ban.map(|r| BanDoc {
            reason: r.into(),
            since: ago(600),
            until: Some(ago(-3000)),
            manual: false,
            strikes: 1,
        }),
    }
}

fn gpus(p: &str, free: u32, up: bool) -> PartitionGpus {
    PartitionGpus {
        partition: p.into(),
        up,
        gpu_type: Some("a100".into()),
        model: Some("A100".into()),
        vram_gb_min: Some(80),
        vram_gb_max: Some(80),
        gpus_per_node: 4,
        largest_now: free.min(4),
        nodes_free: free.div_ceil(4),
        nodes_usable: 4,
        nodes_total: 4,
        gpus_free: free,
        gpus_total: 16,
        max_time_minutes: None,
        priority_tier: 1,
    }
}

fn cluster() -> ClusterSnapshot {
    ClusterSnapshot {
        cluster: "testc".into(),
        nodes: NodesDoc {
            cluster: "testc".into(),
            nodes: vec![
                node("a100-1", "IDLE", 4, Some("Xid 79 in run train")),
                node("a100-2", "MIXED", 2, None),
                node("a100-3", "DOWN", 0, None),
                node("a100-4", "ALLOCATED", 0, None),
            ],
            incidents: vec![],
        },
        gpus: vec![
            gpus("a100", 6, true),
            gpus("debug", 0, true),
            gpus("old", 0, false),
        ],
        fetched_at: ago(4),
    }
}

/// An app with runs, cluster and the selected run's detail loaded.
fn app() -> App {
    let mut app = App::new(now(), true);
    update(&mut app, Msg::Runs(Ok(runs())));
    update(&mut app, Msg::Cluster(Ok(cluster())));
    // Status sort: eval, train, finetune, sweep-3; train has the most to show.
    keys(&mut app, "j");
    let req = app.detail_request().unwrap();
    let events = vec![
        entry(7000, "submitted", Some(1), "job 101 submitted to a100"),
        entry(
            6400,
            "attempt_failed",
            Some(1),
            "node fault on a100-1: Xid 79",
        ),
        entry(1830, "submitted", Some(2), "job 102 submitted to a100"),
        entry(1800, "running", Some(2), "job 102 runs on a100-2"),
    ];
    for upd in [
        DetailUpdate::Events(events),
        DetailUpdate::Script(Ok(
            "#!/bin/bash\n#SBATCH --partition=a100 --time=24:00:00\n#SHEPHERD --gpus 4\n# a comment\npython train.py --resume\n".into(),
        )),
        DetailUpdate::Extra(RunExtra {
            pending_reason: None,
            live_phase: Some(crate::policy::state::AttemptPhase::Running),
            not_before: None,
        }),
        DetailUpdate::Log(LogChunk {
            attempt: Some(2),
            stream: Stream::Stdout,
            path: Some("/work/slurm-102.out".into()),
            reset: true,
            lines: (1..=60).map(|i| format!("step {i} loss {:.3}", 1.0 / i as f64)).collect(),
            size: 1234,
            note: None,
            partial: None,
        }),
    ] {
        update(&mut app, Msg::Detail(req.clone(), upd));
    }
    app
}

fn entry(secs: i64, kind: &str, attempt: Option<u32>, message: &str) -> JournalEntry {
    JournalEntry {
        time: ago(secs),
        kind: kind.into(),
        attempt,
        job_id: None,
        message: message.into(),
        status: "running".into(),
    }
}

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(app, f)).unwrap();
    t
}

fn screen(app: &App, w: u16, h: u16) -> String {
    draw(app, w, h).backend().to_string()
}

fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn keys(app: &mut App, s: &str) -> Vec<Effect> {
    s.chars().flat_map(|c| key(app, KeyCode::Char(c))).collect()
}

#[test]
fn tui_runs_screen() {
    insta::assert_snapshot!(screen(&app(), 100, 30));
}

#[test]
fn tui_runs_screen_at_80x24() {
    insta::assert_snapshot!(screen(&app(), 80, 24));
}

#[test]
fn tui_detail_tabs() {
    let mut a = app();
    for (n, tab) in ["2", "3", "4", "5"]
        .iter()
        .zip(["attempts", "events", "script", "logs"])
    {
        keys(&mut a, n);
        insta::assert_snapshot!(format!("tui_tab_{tab}"), screen(&a, 100, 30));
    }
}

#[test]
fn tui_fullscreen_log_search() {
    let mut a = app();
    keys(&mut a, "5f/step 4");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.mode, Mode::Normal);
    assert!(!a.follow, "a match above the end stops following");
    insta::assert_snapshot!(screen(&a, 100, 30));
    // `F` goes back to the end.
    keys(&mut a, "F");
    assert!(a.follow);
    assert_eq!(a.detail_scroll, 0);
}

#[test]
fn tui_nodes_and_gpus_screens() {
    let mut a = app();
    keys(&mut a, "gn");
    assert_eq!(a.screen, Screen::Nodes);
    keys(&mut a, "j");
    insta::assert_snapshot!("tui_nodes", screen(&a, 100, 30));
    insta::assert_snapshot!("tui_nodes_80x24", screen(&a, 80, 24));
    keys(&mut a, "gp");
    assert_eq!(a.screen, Screen::Gpus);
    insta::assert_snapshot!("tui_gpus", screen(&a, 100, 30));
}

#[test]
fn tui_help_and_confirmation_overlays() {
    let mut a = app();
    keys(&mut a, "?");
    insta::assert_snapshot!("tui_help", screen(&a, 80, 24));
    keys(&mut a, "x");
    assert_eq!(a.mode, Mode::Normal, "any key closes the help");
    keys(&mut a, "s");
    insta::assert_snapshot!("tui_confirm_stop", screen(&a, 80, 24));
}

#[test]
fn tui_slurm_banner_and_empty_states() {
    let mut a = App::new(now(), true);
    insta::assert_snapshot!("tui_loading", screen(&a, 80, 10));
    update(&mut a, Msg::Runs(Ok(vec![])));
    update(&mut a, Msg::SlurmAsking(ago(20)));
    insta::assert_snapshot!("tui_slow_slurm", screen(&a, 80, 10));
    update(
        &mut a,
        Msg::Cluster(Err("`squeue` timed out after 30s".into())),
    );
    keys(&mut a, "gn");
    insta::assert_snapshot!("tui_dead_slurm", screen(&a, 80, 10));
}

#[test]
fn tui_banner_says_since_when_runs_have_no_daemon() {
    use crate::view::daemon::Watch;
    let mut a = app();
    assert_eq!(a.banner(), None, "not read yet: no claim");
    update(
        &mut a,
        Msg::Watch(Watch {
            live: None,
            last_seen: Some(ago(3 * 3600)),
            stopped: None,
        }),
    );
    let banner = a.banner().unwrap();
    assert!(
        banner.starts_with("no daemon since ")
            && banner.contains("(3h ago): 2 active run(s) not watched"),
        "{banner}"
    );
    insta::assert_snapshot!("tui_unwatched", screen(&a, 120, 8));
    // A daemon again: the banner goes.
    update(
        &mut a,
        Msg::Watch(Watch {
            live: Some(crate::daemon::lease::Lease {
                version: 1,
                host: "login-1".into(),
                pid: 7,
                started_at: ago(5),
                heartbeat_at: ago(1),
                poll_interval_secs: 10,
                started_by: crate::daemon::lease::StartedBy::Ensure,
                slurm_job_id: None,
            }),
            last_seen: None,
            stopped: None,
        }),
    );
    assert_eq!(a.banner(), None);
    // Only ended runs: nothing to watch, nothing said.
    let ended: Vec<RunRow> = runs().into_iter().filter(|r| r.doc.is_ended()).collect();
    update(&mut a, Msg::Runs(Ok(ended)));
    update(
        &mut a,
        Msg::Watch(Watch {
            live: None,
            last_seen: None,
            stopped: None,
        }),
    );
    assert_eq!(a.banner(), None);
}

#[test]
fn tui_selection_follows_the_run_across_resorts_and_refreshes() {
    let mut a = app();
    keys(&mut a, "k");
    assert_eq!(a.selected.as_deref(), Some("eval"));
    keys(&mut a, "j");
    assert_eq!(a.selected.as_deref(), Some("train"));
    keys(&mut a, "o");
    assert_eq!(a.sort, Sort::Newest);
    assert_eq!(a.selected.as_deref(), Some("train"));
    keys(&mut a, "o");
    assert_eq!(a.sort, Sort::Name);
    assert_eq!(a.selected.as_deref(), Some("train"));
    assert_eq!(a.selected_index(), Some(3));
    // A refresh in another order, with a new run: still on train.
    let mut rows = runs();
    rows.reverse();
    rows.push(run("aaa", "queued", 10, vec![]));
    update(&mut a, Msg::Runs(Ok(rows)));
    assert_eq!(a.selected.as_deref(), Some("train"));
    assert_eq!(a.selected_index(), Some(4));
    // The selected run disappears: the first row is selected.
    let rows: Vec<RunRow> = runs().into_iter().filter(|r| r.id() != "train").collect();
    update(&mut a, Msg::Runs(Ok(rows)));
    assert_eq!(a.selected.as_deref(), Some("eval"));
}

#[test]
fn tui_filter_narrows_and_escape_clears() {
    let mut a = app();
    keys(&mut a, "/a100-4");
    assert_eq!(a.mode, Mode::Filter);
    assert_eq!(a.view.len(), 1);
    assert_eq!(a.selected.as_deref(), Some("finetune"));
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(a.filter, "a100-4");
    // `q` in normal mode while filtering would quit; Esc clears first.
    key(&mut a, KeyCode::Esc);
    assert!(!a.quit);
    assert_eq!(a.view.len(), 4);
    assert_eq!(a.selected.as_deref(), Some("finetune"));
    // A bare Esc (or the first byte of a key split over a slow link) never
    // quits: only `q` and Ctrl-c do.
    for _ in 0..3 {
        key(&mut a, KeyCode::Esc);
        assert!(!a.quit);
    }
    keys(&mut a, "lf");
    assert!(a.fullscreen);
    key(&mut a, KeyCode::Esc);
    assert!(!a.fullscreen && !a.quit);
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.focus, super::app::Focus::List);
    keys(&mut a, "q");
    assert!(a.quit);
}

#[test]
fn tui_stop_asks_first() {
    let mut a = app();
    assert!(keys(&mut a, "s").is_empty());
    assert_eq!(
        a.mode,
        Mode::Confirm(Confirm::Stop {
            run: "train".into()
        })
    );
    assert!(keys(&mut a, "n").is_empty(), "anything but y cancels");
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(
        keys(&mut a, "sy"),
        vec![Effect::Control {
            run: "train".into(),
            control: Control::Stop
        }]
    );
}

#[test]
fn tui_restart_and_pause_act_at_once() {
    let mut a = app();
    assert_eq!(
        keys(&mut a, "r"),
        vec![Effect::Control {
            run: "train".into(),
            control: Control::Restart
        }]
    );
    assert_eq!(
        keys(&mut a, "p"),
        vec![Effect::Control {
            run: "train".into(),
            control: Control::Pause
        }]
    );
    // Not on the nodes screen: `r`, `s`, `p` mean nothing there.
    keys(&mut a, "gn");
    assert!(keys(&mut a, "rsp").is_empty());
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn tui_ban_prompts_for_ttl_and_reason_then_asks() {
    let mut a = app(); // train, on a100-2
    keys(&mut a, "b");
    assert_eq!(
        a.mode,
        Mode::Prompt {
            kind: PromptKind::BanTtl {
                node: "a100-2".into()
            },
            input: "1h".into()
        }
    );
    key(&mut a, KeyCode::Backspace);
    key(&mut a, KeyCode::Backspace);
    keys(&mut a, "nonsense");
    key(&mut a, KeyCode::Enter);
    assert!(
        matches!(
            a.mode,
            Mode::Prompt {
                kind: PromptKind::BanTtl { .. },
                ..
            }
        ),
        "a bad duration asks again"
    );
    update(
        &mut a,
        Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    keys(&mut a, "2h");
    key(&mut a, KeyCode::Enter);
    keys(&mut a, "ECC errors");
    assert!(key(&mut a, KeyCode::Enter).is_empty());
    let ban = Effect::Ban {
        node: "a100-2".into(),
        ttl: Some(Duration::from_secs(7200)),
        reason: "ECC errors".into(),
    };
    assert_eq!(a.mode, Mode::Confirm(Confirm::Ban(ban.clone())));
    insta::assert_snapshot!("tui_confirm_ban", screen(&a, 80, 24));
    assert_eq!(keys(&mut a, "y"), vec![ban]);
    // On the nodes screen: the selected node, and `u` unbans.
    keys(&mut a, "gn");
    keys(&mut a, "b");
    assert!(matches!(
        &a.mode,
        Mode::Prompt { kind: PromptKind::BanTtl { node }, .. } if node == "a100-1"
    ));
    key(&mut a, KeyCode::Esc);
    assert_eq!(
        keys(&mut a, "u"),
        vec![Effect::Unban {
            node: "a100-1".into()
        }]
    );
}

#[test]
fn tui_new_run_prompts_and_remove_asks_for_ended_runs_only() {
    let mut a = app();
    keys(&mut a, "n");
    keys(&mut a, "jobs/train.sh");
    assert_eq!(
        key(&mut a, KeyCode::Enter),
        vec![Effect::NewRun {
            path: "jobs/train.sh".into()
        }]
    );
    // The selected run is active: removing it is refused.
    let active = a.selected_run().unwrap().doc.status.clone();
    assert!(!matches!(
        active.as_str(),
        "completed" | "failed" | "stopped" | "expired"
    ));
    assert!(keys(&mut a, "x").is_empty());
    assert!(
        a.visible_flash().unwrap().text.contains("stop it first"),
        "{:?}",
        a.visible_flash()
    );
    // An ended run: confirm, then remove.
    let ended = a
        .runs
        .iter()
        .find(|r| matches!(r.doc.status.as_str(), "completed" | "failed" | "stopped"))
        .map(|r| r.doc.run_id.clone())
        .expect("the fixture has an ended run");
    a.selected = Some(ended.clone());
    assert!(keys(&mut a, "x").is_empty());
    assert_eq!(
        a.mode,
        Mode::Confirm(Confirm::Remove { run: ended.clone() })
    );
    assert_eq!(keys(&mut a, "y"), vec![Effect::Remove { run: ended }]);
}

#[test]
fn tui_late_detail_for_another_run_is_dropped() {
    let mut a = app();
    let old = a.detail_request().unwrap();
    keys(&mut a, "j");
    update(
        &mut a,
        Msg::Detail(old, DetailUpdate::Events(vec![entry(1, "x", None, "late")])),
    );
    assert!(a.detail.events.is_empty());
    // Logs of another attempt than the one asked for are dropped too.
    keys(&mut a, "5[");
    let req = DetailRequest {
        attempt: None,
        ..a.detail_request().unwrap()
    };
    update(
        &mut a,
        Msg::Detail(
            req,
            DetailUpdate::Log(LogChunk {
                attempt: Some(2),
                stream: Stream::Stdout,
                path: None,
                reset: true,
                lines: vec!["from attempt 2".into()],
                size: 1,
                note: None,
                partial: None,
            }),
        ),
    );
    assert!(a.detail.log.lines.is_empty());
    assert_eq!(a.log_attempt, Some(1));
}

#[test]
fn tui_scrolling_the_log_stops_following() {
    let mut a = app();
    keys(&mut a, "5l");
    keys(&mut a, "kk");
    assert!(!a.follow);
    assert_eq!(a.detail_scroll, 2);
    // New lines keep the view where it is.
    let req = a.detail_request().unwrap();
    update(
        &mut a,
        Msg::Detail(
            req,
            DetailUpdate::Log(LogChunk {
                attempt: Some(2),
                stream: Stream::Stdout,
                path: None,
                reset: false,
                lines: vec!["new".into()],
                size: 2,
                note: None,
                partial: None,
            }),
        ),
    );
    assert_eq!(a.detail_scroll, 3);
    keys(&mut a, "G");
    assert!(a.follow);
    assert_eq!(a.tab, Tab::Logs);
}

#[test]
fn tui_uses_only_the_8_basic_colours_or_none() {
    let basic = |c: Color| {
        matches!(
            c,
            Color::Reset
                | Color::Black
                | Color::Red
                | Color::Green
                | Color::Yellow
                | Color::Blue
                | Color::Magenta
                | Color::Cyan
                | Color::White
        )
    };
    for color in [true, false] {
        let mut a = app();
        a.color = color;
        for k in ["", "5", "gn", "gp", "gr?"] {
            keys(&mut a, k);
            let t = draw(&a, 100, 30);
            for cell in t.backend().buffer().content() {
                if color {
                    assert!(basic(cell.fg) && basic(cell.bg), "{cell:?}");
                } else {
                    assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset));
                }
            }
        }
    }
}

#[test]
fn tui_log_follower_reads_only_the_end_and_keeps_partial_lines() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("log");
    let mut f = std::fs::File::create(&p).unwrap();
    // 8 MB of lines: more than one read; only the end comes back.
    let line = "x".repeat(99);
    for _ in 0..80_000 {
        writeln!(f, "{line}").unwrap();
    }
    write!(f, "last line\npart").unwrap();
    f.flush().unwrap();
    let mut follower = LogFollower::default();
    let got = follower.poll(&p).unwrap();
    let (reset, lines, size) = (got.reset, got.lines, got.size);
    assert!(reset);
    assert_eq!(got.partial.as_deref(), Some("part"));
    assert_eq!(size, std::fs::metadata(&p).unwrap().len());
    assert!(lines.len() <= super::data::LOG_LINES);
    assert_eq!(lines.last().unwrap(), "last line");
    assert!(lines.iter().all(|l| l == &line || l == "last line"));
    write!(f, "ial\nnext\n").unwrap();
    f.flush().unwrap();
    let got = follower.poll(&p).unwrap();
    assert!(!got.reset);
    assert_eq!(got.lines, vec!["partial".to_string(), "next".to_string()]);
    assert_eq!(got.partial, None);
    // Truncated: starts again.
    drop(f);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    drop(f);
    std::fs::write(&p, "fresh\n").unwrap();
    let got = follower.poll(&p).unwrap();
    assert!(got.reset);
    assert_eq!(got.lines, vec!["fresh".to_string()]);
}

#[test]
fn tui_plain_words_for_pending_reasons() {
    use super::render::pending_words;
    assert_eq!(
        pending_words("Resources"),
        "waiting for GPUs or nodes to free up"
    );
    assert_eq!(
        pending_words("ReqNodeNotAvail, UnavailableNodes:a100-1"),
        "the nodes it needs are down, drained or reserved"
    );
    assert_eq!(
        pending_words("SomethingNew"),
        "waiting; should start eventually"
    );
}

#[test]
fn tui_smoke_test_of_one_node_or_all_after_asking() {
    use super::smoke::{Smoke, SmokeTarget};
    let mut a = app();
    assert!(keys(&mut a, "t").is_empty(), "only on the nodes screen");
    keys(&mut a, "gnj");
    assert_eq!(
        keys(&mut a, "t"),
        vec![Effect::Smoke {
            targets: vec![SmokeTarget {
                node: "a100-2".into(),
                partition: Some("a100".into()),
                gpus: true
            }]
        }]
    );
    // Every usable, unbanned node: a100-2 only (a100-1 banned, a100-3 down,
    // a100-4 allocated counts as unusable in this fixture).
    assert!(keys(&mut a, "T").is_empty());
    assert!(matches!(a.mode, Mode::Confirm(Confirm::Smoke(_))));
    assert_eq!(keys(&mut a, "y").len(), 1);
    update(&mut a, Msg::Smoke("a100-2".into(), Smoke::Passed(3)));
    update(
        &mut a,
        Msg::Smoke("a100-4".into(), Smoke::Failed("node_fail (exit 1)".into())),
    );
    update(
        &mut a,
        Msg::Smoke("a100-3".into(), Smoke::Pending("Resources".into())),
    );
    insta::assert_snapshot!("tui_nodes_smoke", screen(&a, 100, 12));
}

#[test]
fn tui_log_with_colours_progress_and_tabs_renders_as_clean_text() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("log");
    std::fs::write(
        &p,
        "\x1b[1;32mEpoch 1\x1b[0m done\n\
         \r 10%|#     |\r 50%|###   |\r100%|######|\n\
         col\tnext\n\
         osc\x1b]52;c;aGk=\x07 bell\x07\n",
    )
    .unwrap();
    let mut follower = LogFollower::default();
    let got = follower.poll(&p).unwrap();
    let (reset, lines, size) = (got.reset, got.lines, got.size);
    assert_eq!(
        lines,
        [
            "Epoch 1 done",
            "100%|######|",
            "col     next",
            "osc bell\u{fffd}"
        ]
    );
    let mut a = app();
    keys(&mut a, "5");
    let req = a.detail_request().unwrap();
    update(
        &mut a,
        Msg::Detail(
            req,
            DetailUpdate::Log(LogChunk {
                attempt: Some(2),
                stream: Stream::Stdout,
                path: Some(p.clone()),
                reset,
                lines,
                size,
                note: None,
                partial: None,
            }),
        ),
    );
    let t = draw(&a, 100, 30);
    let s = t.backend().to_string();
    assert!(s.contains("Epoch 1 done"), "{s}");
    assert!(s.contains("100%|######|"), "{s}");
    assert!(s.contains("col     next"), "{s}");
    for cell in t.backend().buffer().content() {
        assert!(
            !cell.symbol().chars().any(char::is_control),
            "{:?}",
            cell.symbol()
        );
    }
}

#[test]
fn tui_selecting_away_and_back_in_one_batch_asks_again() {
    let mut a = app();
    let before = a.detail_request().unwrap();
    assert!(!a.detail.log.lines.is_empty());
    // Both keys before the loop looks at the request again.
    keys(&mut a, "kj");
    let after = a.detail_request().unwrap();
    assert_eq!(after.run, before.run);
    assert_ne!(after, before, "the shell must send the request again");
    assert!(a.detail.log.lines.is_empty());
    // A late answer to the old request is dropped; the new one is taken.
    let chunk = |line: &str| {
        DetailUpdate::Log(LogChunk {
            attempt: Some(2),
            stream: Stream::Stdout,
            path: None,
            reset: true,
            lines: vec![line.into()],
            size: 1,
            note: None,
            partial: None,
        })
    };
    update(&mut a, Msg::Detail(before.clone(), chunk("old")));
    assert!(a.detail.log.lines.is_empty());
    update(&mut a, Msg::Detail(after.clone(), chunk("new")));
    assert_eq!(a.detail.log.lines, ["new"]);
    // `e e` and `[ ]` come back to the same log: asked again too.
    keys(&mut a, "5ee");
    let ee = a.detail_request().unwrap();
    assert_eq!((ee.stream, ee.attempt), (after.stream, after.attempt));
    assert_ne!(ee, after);
    assert!(a.detail.log.lines.is_empty());
    keys(&mut a, "[]");
    let back = a.detail_request().unwrap();
    assert_eq!(back.attempt, None);
    assert_ne!(back, ee);
}

#[test]
fn tui_progress_bar_without_newline_shows_live_and_stays_bounded() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("log");
    let mut f = std::fs::File::create(&p).unwrap();
    write!(f, "start\n\r  1%|").unwrap();
    let mut follower = LogFollower::default();
    let got = follower.poll(&p).unwrap();
    assert_eq!(got.lines, ["start"]);
    assert_eq!(got.partial.as_deref(), Some("  1%|"));
    assert!(got.partial_changed);
    // tqdm redraws with `\r` only: a megabyte later, the live line is the
    // newest state and the follower holds at most its end.
    for i in 0..20_000 {
        write!(f, "\r{:>3}%|{}", i % 100, "#".repeat(40)).unwrap();
    }
    // A character cut between two writes is not decoded yet.
    f.write_all(&"\r99%é".as_bytes()[..5]).unwrap();
    let got = follower.poll(&p).unwrap();
    assert!(got.lines.is_empty());
    assert_eq!(got.partial.as_deref(), Some("99%"));
    assert!(follower_partial_len(&follower) <= super::loaders::PARTIAL_MAX);
    // Nothing new: not changed.
    assert!(!follower.poll(&p).unwrap().partial_changed);
    f.write_all(&"é".as_bytes()[1..]).unwrap();
    f.write_all(b" done\n").unwrap();
    let got = follower.poll(&p).unwrap();
    assert_eq!(got.lines, ["99%é done"]);
    assert_eq!(got.partial, None);
    // In the app: the live line shows last, and is replaced when complete.
    let mut a = app();
    keys(&mut a, "5");
    let req = a.detail_request().unwrap();
    let chunk = |lines: Vec<String>, partial: Option<&str>| {
        DetailUpdate::Log(LogChunk {
            attempt: Some(2),
            stream: Stream::Stdout,
            path: None,
            reset: false,
            lines,
            partial: partial.map(String::from),
            size: 1,
            note: None,
        })
    };
    let n = a.detail.log.len();
    update(
        &mut a,
        Msg::Detail(req.clone(), chunk(vec![], Some(" 42%|####"))),
    );
    assert_eq!(a.detail.log.len(), n + 1);
    assert!(screen(&a, 100, 30).contains(" 42%|####"));
    update(
        &mut a,
        Msg::Detail(req, chunk(vec!["100% done".into()], None)),
    );
    assert_eq!(a.detail.log.len(), n + 1);
    let s = screen(&a, 100, 30);
    assert!(s.contains("100% done") && !s.contains("42%"), "{s}");
}

fn follower_partial_len(f: &LogFollower) -> usize {
    f.partial_len()
}

#[test]
fn tui_long_lines_are_cut_and_rotated_logs_start_again() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("log");
    let mut f = std::fs::File::create(&p).unwrap();
    writeln!(f, "{}", "y".repeat(100_000)).unwrap();
    writeln!(f, "short").unwrap();
    let mut follower = LogFollower::default();
    let got = follower.poll(&p).unwrap();
    assert_eq!(got.lines.len(), 2);
    assert!(got.lines[0].len() <= super::clean::LINE_MAX + 3);
    assert!(got.lines[0].ends_with('…'));
    // Rotated: a new file at the same path, already longer than what was
    // read of the old one.
    drop(f);
    std::fs::rename(&p, dir.path().join("log.1")).unwrap();
    std::fs::write(&p, format!("{}\nnew 1\nnew 2\n", "z".repeat(200_000))).unwrap();
    let got = follower.poll(&p).unwrap();
    assert!(got.reset);
    assert_eq!(&got.lines[1..], ["new 1", "new 2"]);
    // A reset brings the view back to the end, following.
    let mut a = app();
    keys(&mut a, "5lkkk");
    assert!(!a.follow);
    let req = a.detail_request().unwrap();
    update(
        &mut a,
        Msg::Detail(
            req,
            DetailUpdate::Log(LogChunk {
                attempt: Some(2),
                stream: Stream::Stdout,
                path: None,
                reset: true,
                lines: got.lines,
                partial: None,
                size: got.size,
                note: None,
            }),
        ),
    );
    assert!(a.follow);
    assert_eq!(a.detail_scroll, 0);
}

#[test]
fn tui_end_and_page_down_stop_at_the_content() {
    for tab in ["1", "2", "3", "4", "5"] {
        let mut a = app();
        a.page = 30;
        keys(&mut a, tab);
        keys(&mut a, "l");
        keys(&mut a, "G");
        let at_end = a.detail_scroll;
        key(&mut a, KeyCode::End);
        key(&mut a, KeyCode::PageDown);
        for _ in 0..100 {
            keys(&mut a, "j");
        }
        if tab == "5" {
            // Logs count from the end: the end is 0.
            assert_eq!(a.detail_scroll, 0);
            keys(&mut a, "gg");
            assert!(a.detail_scroll < a.detail.log.len(), "{}", a.detail_scroll);
        } else {
            assert_eq!(a.detail_scroll, at_end, "tab {tab}");
            // Something is still shown: not scrolled past the last line.
            let s = screen(&a, 100, 30);
            let body: Vec<&str> = s.lines().skip(16).collect();
            assert!(
                body.iter().any(|l| l.trim_matches(['"', ' ']).len() > 2),
                "tab {tab}:\n{s}"
            );
        }
        // Far jumps do not overflow.
        a.detail_scroll = usize::MAX;
        keys(&mut a, "G");
        key(&mut a, KeyCode::Home);
        keys(&mut a, "G");
    }
}

mod random {
    use proptest::prelude::*;

    use super::*;

    fn any_key() -> impl Strategy<Value = KeyEvent> {
        let chars: Vec<char> = "jkgGqhl12345fo/nNeF[]xrspbtTu?y\u{e9}".chars().collect();
        let codes = vec![
            KeyCode::Esc,
            KeyCode::Enter,
            KeyCode::Tab,
            KeyCode::BackTab,
            KeyCode::Up,
            KeyCode::Down,
            KeyCode::Left,
            KeyCode::Right,
            KeyCode::PageUp,
            KeyCode::PageDown,
            KeyCode::Home,
            KeyCode::End,
            KeyCode::Backspace,
            KeyCode::F(2),
            KeyCode::F(3),
            KeyCode::F(4),
        ];
        prop_oneof![
            proptest::sample::select(chars)
                .prop_map(|c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
            proptest::sample::select(codes).prop_map(|c| KeyEvent::new(c, KeyModifiers::NONE)),
            proptest::sample::select(vec!['d', 'u', 'f', 'b'])
                .prop_map(|c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
        ]
    }

    fn size() -> impl Strategy<Value = (u16, u16)> {
        prop_oneof![
            Just((0, 0)),
            Just((20, 5)),
            Just((80, 24)),
            (0u16..=200, 0u16..=60),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Whatever is typed, at whatever size, drawing never panics.
        #[test]
        fn tui_random_keys_at_any_size_never_panic(
            keys in proptest::collection::vec(any_key(), 0..40),
            (w, h) in size(),
        ) {
            let mut a = app();
            a.page = usize::from(h);
            let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
            t.draw(|f| render(&a, f)).unwrap();
            for k in keys {
                update(&mut a, Msg::Key(k));
                t.draw(|f| render(&a, f)).unwrap();
            }
        }
    }
}

#[test]
fn tui_banner_shows_hung_reads_and_runs_errors() {
    let mut a = app();
    assert_eq!(a.banner(), None);
    a.runs_reading_since = Some(ago(40));
    a.detail_reading_since = Some(ago(2));
    let b = a.banner().unwrap();
    assert!(b.contains("runs not re-read for 40s"), "{b}");
    assert!(!b.contains("files not"), "{b}");
    a.detail_reading_since = Some(ago(15));
    assert!(a.banner().unwrap().contains("files not re-read for 15s"));
    // An error reading the runs shows even with the last list on screen.
    a.runs_reading_since = None;
    a.detail_reading_since = None;
    update(&mut a, Msg::Runs(Err("Stale file handle".into())));
    assert!(!a.runs.is_empty());
    let s = screen(&a, 100, 30);
    assert!(s.contains("cannot read the runs: Stale file handle"), "{s}");
}

#[test]
fn tui_follow_and_log_chunks_touch_only_the_logs_tab() {
    let mut a = app();
    keys(&mut a, "3l");
    // `F` on the events tab does nothing.
    keys(&mut a, "F");
    assert!(a.follow);
    assert_eq!(a.detail_scroll, 0);
    // New log lines leave the events tab's scroll alone, even unfollowed.
    a.follow = false;
    let req = a.detail_request().unwrap();
    update(
        &mut a,
        Msg::Detail(
            req,
            DetailUpdate::Log(LogChunk {
                attempt: Some(2),
                stream: Stream::Stdout,
                path: None,
                reset: false,
                lines: vec!["new".into(); 3],
                size: 2,
                note: None,
                partial: None,
            }),
        ),
    );
    assert_eq!(a.detail_scroll, 0);
    // On the logs tab `F` toggles.
    keys(&mut a, "5F");
    assert!(!a.follow);
    keys(&mut a, "F");
    assert!(a.follow);
}

#[test]
fn tui_attempts_show_long_job_ids_whole() {
    let mut a = app();
    for r in &mut a.runs {
        for at in &mut r.doc.attempts {
            at.job_id = Some(1_234_567_800 + u64::from(at.attempt));
        }
    }
    keys(&mut a, "2");
    let s = screen(&a, 80, 24);
    assert!(s.contains("1234567802") && s.contains("1234567801"), "{s}");
}

/// `tui --remotes a100,h100`: the local runs plus a100's (h100 never
/// answered yet).
fn multi() -> App {
    let mut a = App::new(now(), true).with_remotes(["a100".to_string(), "h100".to_string()]);
    update(&mut a, Msg::Runs(Ok(runs())));
    let remote_rows = |remote: &str| {
        runs()
            .into_iter()
            .filter(|r| r.doc.run_id == "train" || r.doc.run_id == "eval")
            .map(|r| RunRow::on_remote(remote, r.doc))
            .collect::<Vec<_>>()
    };
    update(
        &mut a,
        Msg::RemoteRuns {
            remote: "a100".into(),
            runs: Ok(remote_rows("a100")),
            at: ago(3),
        },
    );
    a
}

#[test]
fn tui_remote_runs_merge_with_local_ones_under_unique_ids() {
    let mut a = multi();
    assert_eq!(a.runs.len(), 6);
    let ids: Vec<&str> = a.view.iter().map(|&i| a.runs[i].id()).collect();
    // Status sort: active first, newest first; the same run id on two
    // clusters is two rows.
    assert_eq!(
        ids,
        [
            "a100/eval",
            "eval",
            "a100/train",
            "train",
            "finetune",
            "sweep-3"
        ]
    );
    // The selection stays on its row across the other clusters' refreshes.
    keys(&mut a, "ggjj");
    assert_eq!(a.selected.as_deref(), Some("a100/train"));
    update(&mut a, Msg::Runs(Ok(runs())));
    assert_eq!(a.selected.as_deref(), Some("a100/train"));
    assert_eq!(a.selected_run().unwrap().remote(), Some("a100"));
    // A refresh of one remote replaces only its rows (and only its rows
    // are taken from its answer).
    update(
        &mut a,
        Msg::RemoteRuns {
            remote: "a100".into(),
            runs: Ok(vec![
                RunRow::on_remote("a100", runs().remove(0).doc),
                RunRow::on_remote("h100", runs().remove(0).doc),
            ]),
            at: ago(1),
        },
    );
    assert_eq!(a.runs.len(), 5);
    assert_eq!(a.selected.as_deref(), Some("a100/train"));
    // A remote not asked for is ignored.
    update(
        &mut a,
        Msg::RemoteRuns {
            remote: "v100".into(),
            runs: Ok(vec![RunRow::on_remote("v100", runs().remove(0).doc)]),
            at: ago(1),
        },
    );
    assert_eq!(a.runs.len(), 5);
    // The filter matches the remote's name (and `local`).
    a.filter = "local".into();
    a.rebuild_view();
    assert_eq!(a.view.len(), 4);
    a.filter = "a100".into();
    a.rebuild_view();
    assert!(a.view.iter().any(|&i| a.runs[i].id() == "a100/train"));
    // The detail request names the run with its remote.
    a.filter.clear();
    a.rebuild_view();
    assert_eq!(a.detail_request().unwrap().run, "a100/train");
}

#[test]
fn tui_actions_on_a_remote_run_name_its_remote() {
    let mut a = multi();
    keys(&mut a, "ggjj");
    assert_eq!(a.selected.as_deref(), Some("a100/train"));
    assert_eq!(
        keys(&mut a, "r"),
        [Effect::Control {
            run: "a100/train".into(),
            control: Control::Restart,
        }]
    );
    keys(&mut a, "s");
    assert_eq!(
        a.mode,
        Mode::Confirm(Confirm::Stop {
            run: "a100/train".into()
        })
    );
    key(&mut a, KeyCode::Esc);
    // Its node is the remote's: REMOTE/NODE.
    keys(&mut a, "b");
    assert!(
        matches!(&a.mode, Mode::Prompt { kind: PromptKind::BanTtl { node }, .. } if node == "a100/a100-2"),
        "{:?}",
        a.mode
    );
    assert_eq!(
        super::data::split_key("a100/a100-2"),
        (Some("a100"), "a100-2")
    );
    assert_eq!(super::data::split_key("train"), (None, "train"));
}

#[test]
fn tui_a_lost_remote_is_a_banner_and_its_rows_stay_stale() {
    let mut a = multi();
    update(
        &mut a,
        Msg::RemoteRuns {
            remote: "a100".into(),
            runs: Err("the ssh connection to a100-login failed: Connection refused".into()),
            at: now(),
        },
    );
    update(&mut a, Msg::Tick(ago(-60)));
    let banner = a.banner().unwrap();
    assert!(
        banner.contains("a100 unreachable: the ssh connection to a100-login failed"),
        "{banner}"
    );
    assert!(banner.contains("showing its runs from 1m ago"), "{banner}");
    assert_eq!(a.runs.len(), 6, "the stale rows stay");
    assert_eq!(a.remote_stale("a100"), Some(Some(ago(3))));
    assert_eq!(a.remote_stale("h100"), None);
    let s = screen(&a, 100, 20);
    assert!(s.contains("a100 (1m)"), "{s}");
    // A remote that never answered says so.
    update(
        &mut a,
        Msg::RemoteRuns {
            remote: "h100".into(),
            runs: Err("Host key verification failed.".into()),
            at: now(),
        },
    );
    assert!(
        a.banner()
            .unwrap()
            .contains("h100 unreachable: Host key verification failed.; no runs from it yet")
    );
    // The next answer (a new connection) clears it.
    update(
        &mut a,
        Msg::RemoteRuns {
            remote: "a100".into(),
            runs: Ok(vec![]),
            at: ago(-60),
        },
    );
    assert!(!a.banner().unwrap().contains("a100"));
    assert_eq!(a.runs.len(), 4);
}

#[test]
fn tui_runs_screen_with_two_clusters() {
    let mut a = multi();
    a.color = false;
    keys(&mut a, "ggjj");
    insta::assert_snapshot!(screen(&a, 100, 20));
    keys(&mut a, "4");
    let s = screen(&a, 100, 20);
    assert!(s.contains("not available for remote runs"), "{s}");
}
