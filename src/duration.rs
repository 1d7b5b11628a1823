//! Durations as people read and write them (`8s`, `1.5s`, `250ms`): a leaf
//! module for messages and flags.

use std::time::Duration;

/// `8s`, `1.5s`, `250ms`.
pub fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
