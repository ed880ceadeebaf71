//! A circuit breaker per storaged member. After [`FAILURES`] calls in a row that failed at the
//! transport (unreachable, or no answer within the request timeout) the member's breaker opens:
//! for [`COOL_DOWN`] the gateway tries that member after every other one instead of in its
//! turn, so a hung member does not cost each request a timeout. Then it is half-open: tried in
//! its turn again, and the next call's outcome closes or reopens it. An open member is never
//! skipped, only tried last, so the breaker cannot make a request fail that would have
//! succeeded.

use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failed calls in a row that open a breaker.
pub const FAILURES: u32 = 3;
/// How long an open breaker puts its member last.
pub const COOL_DOWN: Duration = Duration::from_secs(5);

pub struct Breaker {
    state: Mutex<State>,
    cool_down: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::with_cool_down(COOL_DOWN)
    }
}

#[derive(Default)]
struct State {
    failures: u32,
    opened: Option<Instant>,
}

impl Breaker {
    pub fn with_cool_down(cool_down: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::default()),
            cool_down,
        }
    }

    /// True while open (its member goes last); false when closed or half-open.
    pub fn is_open(&self) -> bool {
        let s = self.state.lock();
        s.opened.is_some_and(|at| at.elapsed() < self.cool_down)
    }

    /// A call reached the member and got an answer (any answer, errors included).
    pub fn success(&self) -> bool {
        let mut s = self.state.lock();
        let was_open = s.opened.is_some();
        *s = State::default();
        was_open
    }

    /// A call failed at the transport. Returns true when this opened the breaker.
    pub fn failure(&self) -> bool {
        let mut s = self.state.lock();
        s.failures = s.failures.saturating_add(1);
        let half_open = s.opened.is_some_and(|at| at.elapsed() >= self.cool_down);
        if s.failures >= FAILURES && (s.opened.is_none() || half_open) {
            s.opened = Some(Instant::now());
            return true;
        }
        false
    }
}

/// The order to try members in: from `start` round the ring, members with an open breaker
/// after the others.
pub fn order(start: usize, breakers: &[&Breaker]) -> Vec<usize> {
    let n = breakers.len();
    let ring = (0..n).map(|s| (start + s) % n);
    let (closed, open): (Vec<usize>, Vec<usize>) = ring.partition(|&i| !breakers[i].is_open());
    closed.into_iter().chain(open).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_after_repeated_failures_and_closes_after_a_success() {
        let cool_down = Duration::from_millis(50);
        let b = Breaker::with_cool_down(cool_down);
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.failure(), "the third failure in a row opens it");
        assert!(b.is_open());
        let others = Breaker::with_cool_down(cool_down);
        assert_eq!(order(0, &[&b, &others]), [1, 0], "an open member goes last");
        tokio::time::sleep(cool_down).await;
        assert!(!b.is_open(), "half-open after the cool-down");
        assert_eq!(order(0, &[&b, &others]), [0, 1]);
        assert!(b.failure(), "a failed probe opens it again");
        assert!(b.is_open());
        assert!(b.success());
        assert!(!b.is_open());
        assert!(!b.failure(), "counting starts again");
    }
}
