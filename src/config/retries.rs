//! A route's timeouts and `retries`, and an upstream's `retry_budget`, into the runtime model
//! (`route::retry`): the upstream's timeouts where the route sets none.

use std::time::Duration;

use super::file::{RetriesSection, RetryBudgetSection, RouteSection};
use super::Errors;
use crate::route::retry::{RetryOn, RetryPolicy, RouteTimeouts, MAX_TRIES};
use crate::route::settings::{BudgetSettings, Timeouts};

/// The route's timeouts over the upstream's (`0s`: none).
pub(super) fn timeouts(r: &RouteSection, upstream: &Timeouts) -> RouteTimeouts {
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    RouteTimeouts {
        connect: nonzero(r.connect_timeout.unwrap_or(upstream.connect)),
        first_byte: nonzero(r.first_byte_timeout.unwrap_or(upstream.read)),
        idle: nonzero(r.idle_timeout.unwrap_or(upstream.read)),
        total: r.total_timeout.and_then(nonzero),
    }
}

/// The route's retry policy.
pub(super) fn policy(r: &RouteSection, key: &str, errors: &mut Errors<'_>) -> RetryPolicy {
    let default = RetriesSection::default();
    let section = r.retries.as_ref().unwrap_or(&default);
    let key = format!("{key}.retries");
    if !(1..=MAX_TRIES).contains(&section.tries) {
        errors.invalid(
            format!("{key}.tries"),
            format!(
                "{} is not 1 to {MAX_TRIES} (attempts in all; 1 turns retries off)",
                section.tries
            ),
        );
    }
    if section.backoff > section.max_backoff {
        errors.invalid(
            format!("{key}.backoff"),
            "is longer than max_backoff; lower it or raise max_backoff",
        );
    }
    RetryPolicy {
        tries: section.tries.clamp(1, MAX_TRIES),
        on: retry_on(&section.on, &key, errors),
        backoff: section.backoff,
        max_backoff: section.max_backoff,
        max_retry_after: section.max_retry_after,
    }
}

fn retry_on(list: &[String], key: &str, errors: &mut Errors<'_>) -> RetryOn {
    let mut on = RetryOn::default();
    for what in list {
        let set = &mut on.statuses;
        let flag = match what.as_str() {
            "connect" => &mut on.connect,
            "reset" => &mut on.reset,
            "timeout" => &mut on.timeout,
            "429" => &mut set.too_many_requests,
            "502" => &mut set.bad_gateway,
            "503" => &mut set.unavailable,
            "504" => &mut set.gateway_timeout,
            other => {
                errors.invalid(
                    format!("{key}.on"),
                    format!("{other:?} is not one of connect, reset, timeout, 429, 502, 503, 504"),
                );
                continue;
            }
        };
        *flag = true;
    }
    on
}

/// An upstream's retry budget.
pub(super) fn budget(
    section: &RetryBudgetSection,
    key: &str,
    errors: &mut Errors<'_>,
) -> BudgetSettings {
    if section.percent > 100 {
        errors.invalid(
            format!("{key}: retry_budget.percent"),
            format!("{} is not a share of 0 to 100", section.percent),
        );
    }
    BudgetSettings {
        percent: section.percent.min(100),
        min_concurrent: section.min_concurrent,
    }
}
