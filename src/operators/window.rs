//! Window maths: which windows an event time falls into, and when a window closes.
//!
//! Windows are half-open `[start, end)` in event-time milliseconds, aligned to the epoch.
//! A window accepts records until stream time reaches `end + grace`; then it is closed: final
//! results are emitted (emit-final) and its state is dropped. A record whose every window is
//! closed is late: it is counted and not applied.

use crate::topology::plan::Window;
use crate::topology::spec::WindowType;

/// One window's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bounds {
    /// Inclusive start (ms).
    pub start: i64,
    /// Exclusive end (ms).
    pub end: i64,
}

/// The windows containing `ts`, oldest first (tumbling: one; hopping: `size / advance`).
pub fn windows_for(window: &Window, ts: i64) -> Vec<Bounds> {
    match window.window_type {
        WindowType::Tumbling | WindowType::Hopping => {
            let (size, advance) = (window.size_ms, window.advance_ms.max(1));
            // The last window starting at or before ts, then step back while it still covers ts.
            // (An event time so close to i64::MIN that no aligned window starts before it gets no
            // window: it is counted as late.)
            let Some(last_start) = ts.checked_sub(ts.rem_euclid(advance)) else { return Vec::new() };
            let mut out = Vec::new();
            let mut start = last_start;
            // Saturating: event times near the ends of i64 must not overflow.
            while start > ts.saturating_sub(size) {
                out.push(Bounds { start, end: start.saturating_add(size) });
                match start.checked_sub(advance) {
                    Some(previous) => start = previous,
                    None => break,
                }
            }
            out.reverse();
            out
        }
        // Sessions and sliding windows are assigned by their operators, not by alignment.
        WindowType::Session | WindowType::Sliding => Vec::new(),
    }
}

/// True when stream time has passed the window's end plus grace.
pub fn is_closed(bounds: Bounds, grace_ms: i64, stream_time: i64) -> bool {
    stream_time >= bounds.end.saturating_add(grace_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(window_type: WindowType, size_ms: i64, advance_ms: i64) -> Window {
        Window { window_type, size_ms, advance_ms, grace_ms: 0 }
    }

    #[test]
    fn tumbling_windows_are_aligned_and_half_open() {
        let w = window(WindowType::Tumbling, 10, 10);
        assert_eq!(windows_for(&w, 0), vec![Bounds { start: 0, end: 10 }]);
        assert_eq!(windows_for(&w, 9), vec![Bounds { start: 0, end: 10 }]);
        assert_eq!(windows_for(&w, 10), vec![Bounds { start: 10, end: 20 }]);
        assert_eq!(windows_for(&w, -1), vec![Bounds { start: -10, end: 0 }]);
    }

    #[test]
    fn hopping_windows_cover_every_overlapping_start() {
        let w = window(WindowType::Hopping, 10, 5);
        assert_eq!(windows_for(&w, 7), vec![Bounds { start: 0, end: 10 }, Bounds { start: 5, end: 15 }]);
        assert_eq!(windows_for(&w, 10), vec![Bounds { start: 5, end: 15 }, Bounds { start: 10, end: 20 }]);
        let w = window(WindowType::Hopping, 10, 3);
        for ts in -20..40 {
            let found = windows_for(&w, ts);
            assert!(found.iter().all(|b| b.start <= ts && ts < b.end && b.start.rem_euclid(3) == 0), "{ts}: {found:?}");
            let expected = (ts - 30..=ts).filter(|s| s.rem_euclid(3) == 0 && s + 10 > ts).count();
            assert_eq!(found.len(), expected, "{ts}");
        }
    }

    #[test]
    fn extreme_event_times_do_not_overflow() {
        let w = window(WindowType::Hopping, 10, 5);
        assert!(!windows_for(&w, i64::MAX).is_empty());
        let _ = windows_for(&w, i64::MIN);
        let _ = windows_for(&w, i64::MIN + 3);
    }

    #[test]
    fn windows_close_at_end_plus_grace() {
        let b = Bounds { start: 0, end: 10 };
        assert!(!is_closed(b, 5, 14));
        assert!(is_closed(b, 5, 15));
    }
}
