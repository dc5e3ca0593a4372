//! Helpers shared by the property tests.

/// The most weight admitted in any half-open window `[t, t + w)` of a
/// time-sorted list of (nanoseconds, weight); the worst window starts at an
/// admission.
pub fn max_in_window(admitted: &[(u64, f64)], w: u64) -> f64 {
    let (mut best, mut end, mut sum) = (0.0f64, 0, 0.0);
    for start in 0..admitted.len() {
        while end < admitted.len() && admitted[end].0 < admitted[start].0 + w {
            sum += admitted[end].1;
            end += 1;
        }
        best = best.max(sum);
        sum -= admitted[start].1;
    }
    best
}
