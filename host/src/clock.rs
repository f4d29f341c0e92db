//! The host's clock: the only source of time for decisions. The agent never supplies it.

/// Seconds since the Unix epoch, from a source the agent cannot set.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that says what it is set to: for tests, demos and replays.
#[derive(Debug, Default)]
pub struct FixedClock(pub std::sync::atomic::AtomicU64);

impl FixedClock {
    pub fn new(seconds: u64) -> FixedClock {
        FixedClock(std::sync::atomic::AtomicU64::new(seconds))
    }

    pub fn set(&self, seconds: u64) {
        self.0.store(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
