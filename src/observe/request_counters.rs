//! `menshen_requests_total{site, route, status_class}` and the bytes of each site
//! (`menshen_request_bytes_total{site}`, `menshen_response_bytes_total{site}`), kept as plain
//! atomics; the site's `menshen_request_duration_seconds` child is made by its first request.
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
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{register_histogram_vec, Histogram, HistogramVec};

use crate::route::Router;

const NAME: &str = "menshen_requests_total";
const HELP: &str = "Requests answered, by site, route and status class";

/// Status classes, indexed by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

use super::labels::NONE;
use crate::route::upstream_metrics::LATENCY_BUCKETS;

/// The byte counters of each site: (name, help).
const BYTES: [(&str, &str); 2] = [
    (
        "menshen_request_bytes_total",
        "Request body bytes received, by site",
    ),
    (
        "menshen_response_bytes_total",
        "Response body bytes sent, by site",
    ),
];

/// Counts of one route, by status class.
#[derive(Default)]
struct ClassCounts([AtomicU64; 5]);

/// (site, route) as labelled.
type Key = (Arc<str>, Arc<str>);

/// What one site counts besides its routes' requests.
pub struct SiteCounts {
    name: Arc<str>,
    /// Request and response body bytes.
    bytes: [AtomicU64; 2],
    /// Its `menshen_request_duration_seconds` child, made by its first request.
    duration: OnceLock<Histogram>,
}

impl SiteCounts {
    fn new(name: Arc<str>) -> Self {
        Self {
            name,
            bytes: Default::default(),
            duration: OnceLock::new(),
        }
    }

    /// The site's name as labelled (`-` for no site).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts one request's duration and body bytes.
    pub fn record(&self, took: Duration, bytes_in: usize, bytes_out: usize) {
        let duration = self
            .duration
            .get_or_init(|| durations().with_label_values(&[&*self.name]));
        duration.observe(took.as_secs_f64());
        self.bytes[0].fetch_add(bytes_in as u64, Ordering::Relaxed);
        self.bytes[1].fetch_add(bytes_out as u64, Ordering::Relaxed);
    }
}

/// `menshen_request_duration_seconds{site}`.
fn durations() -> &'static HistogramVec {
    static DURATIONS: OnceLock<HistogramVec> = OnceLock::new();
    DURATIONS.get_or_init(|| {
        register_histogram_vec!(
            "menshen_request_duration_seconds",
            "Time from request header to the end of the response, by site (\"-\": no site)",
            &["site"],
            LATENCY_BUCKETS.to_vec()
        )
        // A static definition: failing here is a programming error.
        .expect("static metric definition")
    })
}

/// Every route's and site's counts, for the scrape.
struct Table {
    routes: Mutex<HashMap<Key, Arc<ClassCounts>>>,
    sites: Mutex<HashMap<Arc<str>, Arc<SiteCounts>>>,
    descs: Vec<Desc>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<&'static Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        // Static name, help and label names: failing here is a programming error.
        const DEFINED: &str = "static metric definition";
        let desc = |name: &str, help: &str, labels: &[&str]| {
            let labels = labels.iter().map(|l| (*l).to_owned()).collect();
            Desc::new(name.to_owned(), help.to_owned(), labels, HashMap::new()).expect(DEFINED)
        };
        let mut descs = vec![desc(NAME, HELP, &["route", "site", "status_class"])];
        descs.extend(BYTES.iter().map(|(name, help)| desc(name, help, &["site"])));
        let table: &'static Table = Box::leak(Box::new(Table {
            routes: Mutex::new(HashMap::new()),
            sites: Mutex::new(HashMap::new()),
            descs,
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

    fn sites(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<SiteCounts>>> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The registered collector: reads the table at scrape time.
struct Scrape(&'static Table);

impl Collector for Scrape {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
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
                let labels = [("route", &**route), ("site", site), ("status_class", class)];
                metrics.push(series(&labels, value));
            }
        }
        drop(routes);
        let mut families = vec![family(NAME, HELP, metrics)];
        let sites = self.0.sites();
        for (i, (name, help)) in BYTES.iter().enumerate() {
            // A site shows once a request reached it, as its routes' counters do.
            let metrics = sites
                .values()
                .filter(|counts| counts.duration.get().is_some())
                .map(|c| series(&[("site", &c.name)], c.bytes[i].load(Ordering::Relaxed)))
                .collect();
            families.push(family(name, help, metrics));
        }
        families
    }
}

fn family(name: &str, help: &str, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::COUNTER);
    family.set_metric(metrics);
    family
}

/// One counter series; `labels` in name order.
fn series(labels: &[(&str, &str)], value: u64) -> Metric {
    let label = |&(name, value): &(&str, &str)| {
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
    metric.set_label(labels.iter().map(label).collect());
    metric.set_counter(counter);
    metric
}

/// The byte counts and duration of every site of `router`, continuing those already counted,
/// then those of no site (labelled `none`).
fn site_counts(router: &Router, none: Arc<str>) -> Vec<Arc<SiteCounts>> {
    // Registered with the first snapshot: the family is on /metrics before any request.
    durations();
    let mut sites = table().sites();
    let gone: Vec<Arc<str>> = sites
        .iter()
        .filter(|(_, counts)| Arc::strong_count(counts) == 1)
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        if let Some(counts) = sites.remove(&name) {
            if counts.duration.get().is_some() {
                let _ = durations().remove_label_values(&[&*name]);
            }
        }
    }
    let names = router.sites().iter().map(|s| Arc::from(s.name.as_str()));
    names
        .chain(std::iter::once(none))
        .map(|name: Arc<str>| {
            let entry = sites.entry(name.clone());
            Arc::clone(entry.or_insert_with(|| Arc::new(SiteCounts::new(name))))
        })
        .collect()
}

/// Request counters resolved for a snapshot's sites and routes: one atomic add per request.
pub struct RequestCounters {
    /// `[site][route]`, then one extra entry per site for "no route".
    by_route: Vec<Vec<Arc<ClassCounts>>>,
    /// Requests for no configured site.
    unknown_host: Arc<ClassCounts>,
    /// `[site]`, then one for no site.
    sites: Vec<Arc<SiteCounts>>,
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
        drop(routes);
        Self {
            by_route,
            unknown_host,
            sites: site_counts(router, none),
        }
    }

    /// What site `site` (`None`: no site) counts besides its requests.
    pub fn site(&self, site: Option<usize>) -> &SiteCounts {
        let no_site = self.sites.len() - 1;
        &self.sites[site.filter(|&s| s < no_site).unwrap_or(no_site)]
    }

    /// Counts one request by the class of its `status`. A request the client left before any
    /// response (`None`; nginx logs it as 499) counts as 4xx.
    pub fn count(&self, site: Option<usize>, route: Option<usize>, status: Option<u16>) {
        let class = usize::from(status.unwrap_or(499) / 100).clamp(1, 5) - 1;
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
