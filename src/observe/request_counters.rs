//! `menshen_requests_total{site, route, status_class}`, kept as plain atomics.
//!
//! A prometheus `IntCounterVec` child costs about 550 bytes (its label pairs, its description,
//! the map entry); five classes for each route of 10,000 sites made 55 MiB, a third of the
//! proxy's memory at that scale. Here a route costs its five atomics and one table entry, and the
//! families are built only when `/metrics` is scraped.
//!
//! The table outlives snapshots: a route that is still configured after a reload keeps counting
//! where it was (Prometheus sees no reset). Entries that no snapshot refers to any more are
//! dropped when the next snapshot is built.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};

use crate::route::Router;

const NAME: &str = "menshen_requests_total";
const HELP: &str = "Requests answered, by site, route and status class";

/// Status classes, indexed by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The label shown for "no site" and "no route".
const NONE: &str = "-";

/// Counts of one route, by status class.
#[derive(Default)]
struct ClassCounts([AtomicU64; 5]);

/// (site, route) as labelled.
type Key = (Arc<str>, Arc<str>);

/// Every route's counts, for the scrape.
struct Table {
    routes: Mutex<HashMap<Key, Arc<ClassCounts>>>,
    desc: Desc,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<&'static Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        // Static name, help and label names: failing here is a programming error.
        const DEFINED: &str = "static metric definition";
        let desc = Desc::new(
            NAME.to_owned(),
            HELP.to_owned(),
            vec![
                "route".to_owned(),
                "site".to_owned(),
                "status_class".to_owned(),
            ],
            HashMap::new(),
        )
        .expect(DEFINED);
        let table: &'static Table = Box::leak(Box::new(Table {
            routes: Mutex::new(HashMap::new()),
            desc,
        }));
        prometheus::register(Box::new(Scrape(table))).expect(DEFINED);
        table
    })
}

impl Table {
    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<ClassCounts>>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The registered collector: reads the table at scrape time.
struct Scrape(&'static Table);

impl Collector for Scrape {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let routes = self.0.routes();
        let mut metrics = Vec::new();
        for ((site, route), counts) in routes.iter() {
            let values = counts.0.each_ref().map(|c| c.load(Ordering::Relaxed));
            // A route no request reached yet has no series, so 10,000 idle sites do not make
            // 50,000 lines of zeros; once one class counts, all five show.
            if values.iter().all(|&v| v == 0) {
                continue;
            }
            for (class, value) in CLASSES.iter().zip(values) {
                metrics.push(series(route, site, class, value));
            }
        }
        let mut family = MetricFamily::default();
        family.set_name(NAME.to_owned());
        family.set_help(HELP.to_owned());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
    }
}

fn series(route: &str, site: &str, class: &str, value: u64) -> Metric {
    let label = |name: &str, value: &str| {
        let mut pair = LabelPair::default();
        pair.set_name(name.to_owned());
        pair.set_value(value.to_owned());
        pair
    };
    let mut counter = Counter::default();
    // Counts stay far below 2^53, where f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    counter.set_value(value as f64);
    let mut metric = Metric::default();
    metric.set_label(vec![
        label("route", route),
        label("site", site),
        label("status_class", class),
    ]);
    metric.set_counter(counter);
    metric
}

/// Request counters resolved for a snapshot's sites and routes: one atomic add per request.
pub struct RequestCounters {
    /// `[site][route]`, then one extra entry per site for "no route".
    by_route: Vec<Vec<Arc<ClassCounts>>>,
    /// Requests for no configured site.
    unknown_host: Arc<ClassCounts>,
}

impl std::fmt::Debug for RequestCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCounters")
            .field("sites", &self.by_route.len())
            .finish()
    }
}

impl RequestCounters {
    /// Counters for every route of `router`, continuing those of routes already counted.
    pub fn new(router: &Router) -> Self {
        let mut routes = table().routes();
        // What only the table still holds belongs to no snapshot any more.
        routes.retain(|_, counts| Arc::strong_count(counts) > 1);
        let none: Arc<str> = Arc::from(NONE);
        let mut counts = |site: &Arc<str>, route: &str| {
            Arc::clone(
                routes
                    .entry((Arc::clone(site), Arc::from(route)))
                    .or_default(),
            )
        };
        let by_route = router
            .sites()
            .iter()
            .map(|site| {
                let name: Arc<str> = Arc::from(site.name.as_str());
                let mut per_route: Vec<_> = site
                    .routes
                    .iter()
                    .map(|r| counts(&name, &r.prefix))
                    .collect();
                per_route.push(counts(&name, NONE));
                per_route
            })
            .collect();
        let unknown_host = counts(&none, NONE);
        Self {
            by_route,
            unknown_host,
        }
    }

    /// Counts one answered request.
    pub fn count(&self, site: Option<usize>, route: Option<usize>, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let counts = match site.and_then(|s| self.by_route.get(s)) {
            Some(routes) => route
                .and_then(|r| routes.get(r))
                .or_else(|| routes.last())
                .unwrap_or(&self.unknown_host),
            None => &self.unknown_host,
        };
        counts.0[class].fetch_add(1, Ordering::Relaxed);
    }
}
