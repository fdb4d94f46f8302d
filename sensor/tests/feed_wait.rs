//! The feed-URL wait in replay is at most what it is given (60 s by
//! default, docs/output.md), even when a request is in flight at the
//! deadline: the pump thread is left to its own request timeout, not joined
//! (joining made the documented 60 s into 61.8 s, or up to the 30 s request
//! timeout more).

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use pinwatch::enrich::Enricher;

#[test]
fn a_server_that_never_answers_does_not_hold_the_wait_past_its_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accept, read the request, and never answer (until the test ends).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            held.push(s);
        }
    });
    let urls = vec![format!("http://{addr}/feed"), format!("http://{addr}/other")];
    let started = Instant::now();
    let (en, errors) = Enricher::load_sources(&[] as &[&str], &urls, Duration::from_secs(1)).expect("loads");
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(1_800), "the wait for both URLs together stops at its deadline: {waited:?}");
    assert_eq!(en.stats.feed.lines, 0);
    assert!(errors.iter().any(|e| e.contains("not caught up within 1 s")), "{errors:?}");
}
