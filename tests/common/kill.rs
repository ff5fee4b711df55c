//! Killing a child process mid-work, as a power cut or `kill -9` would.

use std::process::Child;
use std::time::{Duration, Instant};

/// Polls `ready` until it holds, then kills `child` with SIGKILL and reaps it. Panics with
/// `ended` if the child exits first and with `stalled` if `limit` passes first.
pub fn kill_when(
    child: &mut Child,
    limit: Duration,
    ended: &str,
    stalled: &str,
    mut ready: impl FnMut() -> bool,
) {
    let started = Instant::now();
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "{ended}");
        assert!(started.elapsed() < limit, "{stalled}");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
