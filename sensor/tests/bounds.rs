//! Structures that grow with traffic, driven with arbitrary input: each
//! stays within its documented bound (docs/output.md, "Limits and overflow
//! actions") and counts what it drops. Times are arbitrary `i64`s, the ends
//! of time included: no arithmetic on them may overflow (overflow checks
//! are on in test builds).

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use pinwatch::config::Config;
use pinwatch::enrich::{An1725, AppOut, BindingOut, Folder, MobileOut};
use pinwatch::flow::CloseKind;
use pinwatch::verdict::classify::{Confidence, FailureClass, Outcome, PathKind, PathOut, TlsFailure};
use pinwatch::verdict::findings::{Correlator, SessionFacts};

fn path(kind: PathKind) -> PathOut {
    PathOut {
        kind,
        confidence: Confidence::High,
        evidence: Vec::new(),
        intercepted: None,
        connect: None,
        bypass_rule: None,
        policy: None,
        wire: None,
        pending: false,
    }
}

fn failure(outcome: Outcome) -> TlsFailure {
    TlsFailure { outcome, class: Some(FailureClass::A), ..TlsFailure::new(CloseKind::Fin) }
}

/// One session: (start time, client, name, rejected under inspection or direct).
fn session() -> impl Strategy<Value = (i64, u8, u8, bool)> {
    (prop_oneof![any::<i64>(), 0i64..10_000_000_000_000, Just(i64::MAX), Just(i64::MIN)], any::<u8>(), any::<u8>(), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn correlator_stays_within_its_caps(sessions in proptest::collection::vec(session(), 1..2_000), max_keys in 1usize..40, max_sessions in 1usize..80) {
        let cfg = Config { explicit_proxies: vec!["10.9.9.9:3128".parse().expect("addr")], ..Config::default() };
        let mut c = Correlator::new(cfg);
        c.max_keys = max_keys;
        c.max_sessions = max_sessions;
        let (intercepted, direct) = (path(PathKind::Intercepted), path(PathKind::Direct));
        let (rejected, established) = (failure(Outcome::ClientRejected), failure(Outcome::Established));
        for (i, (start, client, name, reject)) in sessions.iter().enumerate() {
            let sni = format!("n{name}.example");
            let facts = SessionFacts {
                flow_id: i as u64,
                start_ns: *start,
                client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, *client)),
                server: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
                server_port: 443,
                sni: Some(&sni),
                ech: false,
                quic: false,
                path: if *reject { &intercepted } else { &direct },
                failure: if *reject { &rejected } else { &established },
                app: None,
            };
            let _ = c.observe(&facts);
            let held = c.held();
            prop_assert!(held.queued <= max_sessions + 2, "{held:?}");
            prop_assert!(held.sessions <= max_sessions + 2, "{held:?}");
            prop_assert!(held.keys <= 2 * (max_keys + 1), "{held:?}");
        }
    }

    #[test]
    fn alert_folder_stays_within_its_cap(folds in proptest::collection::vec((prop_oneof![any::<i64>(), 0i64..1_000_000_000_000, Just(i64::MAX), Just(i64::MIN)], any::<u16>()), 1..2_000), max_keys in 1usize..50, window in prop_oneof![Just(300_000_000_000i64), any::<i64>().prop_map(|w| w.saturating_abs())]) {
        let mut f = Folder::new(window);
        f.max_keys = max_keys;
        let mut created = 0u64;
        for (i, (start, dest)) in folds.iter().enumerate() {
            let m = MobileOut {
                device_id: format!("dev-{}", dest % 7),
                binding: BindingOut { confidence: "dhcp".into(), conflict: false, in_grace: false, contested: false, context: "wifi".into(), source: None, vendor: None, identity: None },
                app: AppOut { package: Some(format!("com.example{}", dest % 3)), attribution: "candidate", attribution_evidence: "", attribution_reason: "", attribution_skew_ms: None, attribution_clock_offset_ms: None, runner_up: None, candidates: Vec::new(), version_code: None, signing_cert_sha256: Vec::new(), target_sdk: None, trust_profile: None },
                app_state: None,
                device_locked: None,
                screen_interactive: None,
                secs_since_user_interaction: None,
                baseline: None,
                feed_lines: Vec::new(),
            };
            let v = An1725 { confidence: "low", reasons: Vec::new(), alert_id: String::new(), revision: 0, count: 0 };
            let before = f.held();
            let (out, _) = f.fold(v, &m, &format!("d{dest}.example"), *start, i as u64, &[i as u64]);
            created += u64::from(out.revision == 1);
            prop_assert!(f.held() <= max_keys, "{} open, cap {max_keys}", f.held());
            prop_assert!(f.held() <= before + 1);
        }
        prop_assert!(created <= folds.len() as u64);
    }
}
