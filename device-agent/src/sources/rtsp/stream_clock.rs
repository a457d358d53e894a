//! Capture times from the stream's own clock: the session's first frame is pinned to the wall time it arrived
//! at, and every later frame is placed by its RTP timestamp from there, so network jitter and decoding delays do
//! not move it. Should the two clocks drift apart by more than [`MAX_DRIFT_MS`] (a camera clock running
//! fast or slow, a timestamp jump), the mapping is pinned again to the current frame's arrival.

/// Drift between the stream's clock and the wall clock beyond which the mapping starts over.
pub const MAX_DRIFT_MS: i64 = 5000;

/// Maps RTP timestamps (ticks of `clock_rate` Hz, extended to 64 bits) to Unix milliseconds.
#[derive(Debug, Default)]
pub struct StreamClock {
    /// (stream ticks, wall ms) of the frame the mapping is pinned to.
    anchor: Option<(i64, u64)>,
}

impl StreamClock {
    /// The capture time of a frame stamped `ticks` at `clock_rate` Hz that arrived at `arrived_ms`.
    pub fn capture_ms(&mut self, ticks: i64, clock_rate: u32, arrived_ms: u64) -> u64 {
        if let Some((anchor_ticks, anchor_ms)) = self.anchor {
            let offset_ms = (ticks - anchor_ticks).saturating_mul(1000) / i64::from(clock_rate.max(1));
            let mapped = anchor_ms.saturating_add_signed(offset_ms);
            if (mapped as i64).abs_diff(arrived_ms as i64) <= MAX_DRIFT_MS as u64 {
                return mapped;
            }
        }
        self.anchor = Some((ticks, arrived_ms));
        arrived_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_placed_by_the_stream_clock_not_by_arrival() {
        let mut clock = StreamClock::default();
        assert_eq!(clock.capture_ms(90_000, 90_000, 1_000_000), 1_000_000);
        // 1/30 s later on the stream's clock, arriving late and bunched up.
        assert_eq!(clock.capture_ms(93_000, 90_000, 1_000_090), 1_000_033);
        assert_eq!(clock.capture_ms(96_000, 90_000, 1_000_091), 1_000_066);
    }

    #[test]
    fn a_jump_or_drift_beyond_the_limit_pins_the_mapping_again() {
        let mut clock = StreamClock::default();
        clock.capture_ms(0, 90_000, 1_000_000);
        assert_eq!(clock.capture_ms(90_000 * 60, 90_000, 1_000_500), 1_000_500, "a 60 s jump");
        assert_eq!(clock.capture_ms(90_000 * 61, 90_000, 1_001_600), 1_001_500, "placed from the new anchor");
    }
}
