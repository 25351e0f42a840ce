//! Label values shared by every metric family.

/// The label of "no site", "no route", "no listener", "no version": unknown hosts all count
/// under it, so that what clients send never makes a new series.
pub const NONE: &str = "-";
