//! Every parser of input Shepherd does not control, fed arbitrary and mangled
//! input: it returns a value or a clear error, and never panics.
//!
//! The inputs are of two kinds: arbitrary text, and real recorded outputs
//! (`tests/fixtures/slurm/`, the state files Shepherd writes) cut, spliced
//! and corrupted at random places, which reach far deeper into a parser than
//! random text does. The parsers: durations, `#SHEPHERD` directives (through
//! `submit::prepare` on a real file), the configuration file, every versioned
//! state file, every Slurm output parser, the hostlist expander, nvidia-smi's
//! outputs, and the fault-signature scanner.

use proptest::prelude::*;

const FIXTURES: &[&str] = &[
    include_str!("../tests/fixtures/slurm/plain/config.out"),
    include_str!("../tests/fixtures/slurm/plain/estimate.err"),
    include_str!("../tests/fixtures/slurm/plain/nodes_busy.out"),
    include_str!("../tests/fixtures/slurm/plain/nodes_faults.out"),
    include_str!("../tests/fixtures/slurm/plain/partitions.out"),
    include_str!("../tests/fixtures/slurm/plain/squeue_faults.out"),
    include_str!("../tests/fixtures/slurm/plain/squeue_mixed.out"),
    include_str!("../tests/fixtures/slurm/plain/scontrol_jobs.out"),
    include_str!("../tests/fixtures/slurm/plain/sacct.out"),
    include_str!("../tests/fixtures/slurm/plain/topology.out"),
    include_str!("../tests/fixtures/slurm/accounting/sacct.out"),
];

/// A recorded output with a random cut, a random splice of another and a
/// random byte run inserted: text that is almost right.
fn mangled() -> impl Strategy<Value = String> {
    (
        0..FIXTURES.len(),
        0..FIXTURES.len(),
        any::<usize>(),
        any::<usize>(),
        any::<usize>(),
        "[\\x00-\\x7f\\u{80}-\\u{10ffff}]{0,12}",
    )
        .prop_map(|(a, b, cut, from, at, junk)| {
            let (a, b) = (FIXTURES[a], FIXTURES[b]);
            let floor = |s: &str, i: usize| {
                let mut i = i % (s.len() + 1);
                while !s.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let cut = floor(a, cut);
            let from = floor(b, from);
            let mut s = format!("{}{}", &a[..cut], &b[from..]);
            let at = floor(&s, at);
            s.insert_str(at, &junk);
            s
        })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        mangled(),
        "[=:| ,\\[\\]\\-0-9a-zA-Z\\n()/]{0,200}"
    ]
}

fn tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::UTC
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn slurm_outputs(s in text()) {
        use crate::slurm::parse::*;
        use crate::slurm::types::AccountingSource;
        let _ = squeue::parse(&s, &tz());
        for source in [AccountingSource::Slurmdbd, AccountingSource::JobComp, AccountingSource::Controller] {
            let _ = sacct::parse(&s, source, &tz());
        }
        let _ = sacct::is_storage_disabled(&s);
        let _ = sbatch::job_id(&s);
        let _ = sbatch::start_estimate(&s, &tz());
        let _ = scontrol::nodes(&s);
        let _ = scontrol::partitions(&s);
        let _ = scontrol::topology(&s);
        let _ = scontrol::config(&s);
        let _ = scontrol::job_records(&s, &tz());
        let _ = kv::records(&s);
        let _ = crate::slurm::reasons::classify_pending(&s);
        let _ = crate::slurm::error::is_unreachable_message(&s);
        let _ = crate::slurm::error::is_unknown_job_message(&s);
    }

    #[test]
    fn slurm_values(s in "[\\[\\]\\-,:0-9a-z()=/*]{0,40}|\\PC{0,40}") {
        use crate::slurm::parse::values::*;
        let _ = time(&s, &tz());
        let _ = time_limit_minutes(&s);
        let _ = gres_list(&s);
        let _ = tres_gpus(&s);
        // A hostlist like `a100-[1-99999999]` must not expand without bound.
        if let Ok(hosts) = crate::slurm::hostlist::expand(&s) {
            prop_assert!(hosts.len() <= 1_000_000);
        }
    }

    #[test]
    fn durations(s in "[0-9smhd ]{0,30}|\\PC{0,20}") {
        if let Ok(d) = crate::duration::parse(&s) {
            prop_assert!(d <= crate::duration::MAX);
        }
    }

    #[test]
    fn configuration(s in prop_oneof![
        any::<String>(),
        "(\\[(defaults|blacklist|catalog|signatures|notify)\\]\\n)?([a-z_]{1,12} = (\"[^\"\\n]{0,10}\"|[0-9]{1,25}|\\[\\]|true)\\n){0,6}",
    ]) {
        let _ = crate::config::parse(&s);
    }

    #[test]
    fn state_files(s in prop_oneof![any::<String>(), state_like()]) {
        use crate::store::atomic::parse_json;
        use crate::records::*;
        let p = std::path::Path::new("x.json");
        let b = s.as_bytes();
        let _ = parse_json::<crate::policy::state::RunState>(p, b, crate::policy::state::STATE_VERSION);
        let _ = parse_json::<SpecFile>(p, b, SPEC_VERSION);
        let _ = parse_json::<Outcome>(p, b, OUTCOME_VERSION);
        let _ = parse_json::<Heartbeat>(p, b, HEARTBEAT_VERSION);
        let _ = parse_json::<Progress>(p, b, PROGRESS_VERSION);
        let _ = parse_json::<crate::policy::blacklist::Blacklist>(p, b, crate::policy::blacklist::BLACKLIST_VERSION);
        let _ = parse_json::<crate::daemon::lease::Lease>(p, b, crate::daemon::lease::LEASE_VERSION);
    }

    #[test]
    fn nvidia_smi_outputs(s in prop_oneof![any::<String>(), smi_like()]) {
        use crate::wrapper::probe::*;
        let _ = parse_listing(&s);
        let _ = parse_health(&s);
        let _ = parse_compute_apps(&s);
    }

    #[test]
    fn fault_signatures(s in prop_oneof![any::<String>(), "(Xid|NVRM|CUDA|NCCL|ECC|error|GPU)[ :()0-9a-z,]{0,60}\\n{0,3}"]) {
        let set = crate::policy::signatures::SignatureSet::builtin();
        let hits = crate::policy::signatures::scan(&s, &set);
        let _ = crate::policy::signatures::verdict(&hits);
    }

    #[test]
    fn directives(body in "(#SHEPHERD|#SBATCH)( --?[a-z-]{1,16}(=| )?[^\\n]{0,12}){0,3}\\n{1,2}") {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("job.sh");
        std::fs::write(&script, format!("#!/bin/bash\n{body}true\n")).unwrap();
        let _ = crate::submit::prepare(
            &script,
            Default::default(),
            Default::default(),
            dir.path(),
            jiff::Timestamp::UNIX_EPOCH,
        );
    }
}

/// JSON that looks like Shepherd's own files: a version first, then keys of
/// theirs with values of the wrong type, truncated at random.
fn state_like() -> impl Strategy<Value = String> {
    (
        0u32..4,
        proptest::collection::vec(
            (
                "(status|attempts|reason|verdict|kind|code|nodes|ban|until|pid|job_id|spec|run_id|time|seq)",
                "(null|-1|18446744073709551616|\"\"|\"x\"|\\[\\]|\\{\\}|true|1e999|\"2026-13-40T25:00:00Z\")",
            ),
            0..8,
        ),
        any::<usize>(),
    )
        .prop_map(|(v, kvs, cut)| {
            let body: Vec<String> = kvs.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            let s = format!("{{\"version\": {v}, {}}}", body.join(", "));
            let mut cut = cut % (s.len() + 1);
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s[..cut].to_string()
        })
}

/// Text shaped like `nvidia-smi -L`, `-q` and `--query-*` output.
fn smi_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "GPU [0-9]{1,3}: [A-Za-z0-9 ]{0,20} \\(UUID: GPU-[0-9a-f-]{0,36}\\)",
            "GPU [0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\\.[0-9]",
            " {4,8}[A-Za-z ]{1,30} *: *[A-Za-z0-9 ./-]{0,12}",
            "[0-9]{1,6}, [a-z/_]{1,12}, [0-9]{1,6}( MiB)?",
            "(No devices were found|N/A|\\[Not Supported\\]|Invalid combination of input arguments\\.)",
        ],
        0..25,
    )
    .prop_map(|lines| lines.join("\n"))
}
