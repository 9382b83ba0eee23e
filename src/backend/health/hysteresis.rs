//! Rise/fall hysteresis in one counter, as HAProxy keeps it (`check->health` in `check.c`).
//!
//! The counter runs from `0` to `rise + fall - 1`: `0..rise` is down, `rise..rise + fall` is up.
//! A success while down counts up, and reaching `rise` jumps to the top (fully up); a failure
//! while up counts down, and a failure at `rise` drops to `0` (fully down). So a server changes
//! state only after `rise` consecutive successes or `fall` consecutive failures, a success resets
//! the failures an up server had and a failure resets the successes a down server had, and the
//! counter can never run past either end.

use crate::backend::state::Health;

/// Rise/fall hysteresis of one server's health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    /// `0..rise` down, `rise..=top` up; `u64` so that `rise + fall - 1` never overflows.
    counter: u64,
    /// Consecutive successes that bring a down server up (≥ 1).
    rise: u32,
    /// Consecutive failures that take an up server down (≥ 1).
    fall: u32,
}

impl Hysteresis {
    /// Hysteresis with `rise` and `fall` (each at least 1; 0 is taken as 1), starting fully up
    /// (`fall` failures needed to go down) or fully down (`rise` successes needed to go up).
    pub fn new(rise: u32, fall: u32, start_up: bool) -> Self {
        let rise = rise.max(1);
        let fall = fall.max(1);
        let mut h = Self {
            counter: 0,
            rise,
            fall,
        };
        if start_up {
            h.counter = h.top();
        }
        h
    }

    /// The highest counter value: fully up.
    fn top(&self) -> u64 {
        u64::from(self.rise) + u64::from(self.fall) - 1
    }

    /// The health the counter stands for.
    pub fn health(&self) -> Health {
        if self.counter >= u64::from(self.rise) {
            Health::Up
        } else {
            Health::Down
        }
    }

    /// Counts one check result; `Some(new health)` when it changes the server's state.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let before = self.health();
        let rise = u64::from(self.rise);
        self.counter = match (before, ok) {
            (Health::Up, true) => self.top(),
            (Health::Up, false) if self.counter > rise => self.counter - 1,
            (Health::Up, false) => 0,
            (Health::Down, true) if self.counter + 1 >= rise => self.top(),
            (Health::Down, true) => self.counter + 1,
            (Health::Down, false) => 0,
        };
        let after = self.health();
        (after != before).then_some(after)
    }

    /// Progress toward the other state, as HAProxy prints it: consecutive results of the kind
    /// that would change the state, and how many are needed (`(1, 3)`: one failure of three).
    pub fn progress(&self) -> (u32, u32) {
        // Up: top - counter < fall; down: counter < rise. Both fit in a u32.
        let fit = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        match self.health() {
            Health::Up => (fit(self.top() - self.counter), self.fall),
            Health::Down => (fit(self.counter), self.rise),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results`; returns the index and new state of every transition.
    fn transitions(h: &mut Hysteresis, results: &[bool]) -> Vec<(usize, Health)> {
        results
            .iter()
            .enumerate()
            .filter_map(|(i, &ok)| h.record(ok).map(|t| (i, t)))
            .collect()
    }

    #[test]
    fn starts_where_asked() {
        assert_eq!(Hysteresis::new(2, 3, true).health(), Health::Up);
        assert_eq!(Hysteresis::new(2, 3, false).health(), Health::Down);
    }

    #[test]
    fn down_after_exactly_fall_failures_up_after_exactly_rise_successes() {
        for rise in 1..=5 {
            for fall in 1..=5 {
                let mut h = Hysteresis::new(rise, fall, true);
                for i in 1..fall {
                    assert_eq!(
                        h.record(false),
                        None,
                        "rise {rise} fall {fall}: failure {i}"
                    );
                    assert_eq!(h.progress(), (i, fall));
                }
                assert_eq!(
                    h.record(false),
                    Some(Health::Down),
                    "rise {rise} fall {fall}"
                );
                for i in 1..rise {
                    assert_eq!(h.record(true), None, "rise {rise} fall {fall}: success {i}");
                    assert_eq!(h.progress(), (i, rise));
                }
                assert_eq!(h.record(true), Some(Health::Up), "rise {rise} fall {fall}");
                // Up again means fully up: `fall` failures needed, not one.
                assert_eq!(h, Hysteresis::new(rise, fall, true));
            }
        }
    }

    #[test]
    fn starting_down_needs_rise_successes() {
        let mut h = Hysteresis::new(2, 3, false);
        assert_eq!(transitions(&mut h, &[true, true]), vec![(1, Health::Up)]);
    }

    #[test]
    fn flapping_never_transitions_when_rise_and_fall_at_least_two() {
        for rise in 2..=4 {
            for fall in 2..=4 {
                for start_up in [true, false] {
                    // ok,fail,ok,... and fail,ok,fail,..., each from a fresh start.
                    for first in [true, false] {
                        let mut h = Hysteresis::new(rise, fall, start_up);
                        let flap: Vec<bool> = (0..100).map(|i| (i % 2 == 0) == first).collect();
                        assert_eq!(
                            transitions(&mut h, &flap),
                            vec![],
                            "rise {rise} fall {fall} start_up {start_up} first {first}"
                        );
                        assert_eq!(h.health(), Hysteresis::new(rise, fall, start_up).health());
                    }
                }
            }
        }
    }

    #[test]
    fn one_success_resets_the_failure_count() {
        let mut h = Hysteresis::new(2, 3, true);
        let seq = [false, false, true, false, false, true, false, false, false];
        assert_eq!(transitions(&mut h, &seq), vec![(8, Health::Down)]);
    }

    #[test]
    fn counter_saturates_at_both_ends() {
        let mut h = Hysteresis::new(2, 3, true);
        for _ in 0..1000 {
            assert_eq!(h.record(true), None);
        }
        assert_eq!(transitions(&mut h, &[false; 3]), vec![(2, Health::Down)]);
        for _ in 0..1000 {
            assert_eq!(h.record(false), None);
        }
        assert_eq!(transitions(&mut h, &[true; 2]), vec![(1, Health::Up)]);
    }

    #[test]
    fn zero_and_huge_values_do_not_panic() {
        let mut h = Hysteresis::new(0, 0, true);
        assert_eq!(h.record(false), Some(Health::Down));
        assert_eq!(h.record(true), Some(Health::Up));
        let mut h = Hysteresis::new(u32::MAX, u32::MAX, true);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None);
        assert_eq!(h.health(), Health::Up);
    }
}
