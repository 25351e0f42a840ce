//! The reference stays whole: every key of the schema is in `docs/configuration.md`'s tables and
//! set in `conf/reference.toml`, nothing is listed that the schema lacks, and the shipped
//! configs load with `menshen check`.

mod support;

use std::collections::BTreeSet;

use menshen::config::file::{FileConfig, WeightedBackend};
use support::schema::{keys_in_toml, keys_of, Keys};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every key of the schema, from the serde derives.
fn schema() -> Keys {
    let mut keys = Keys::default();
    keys_of::<FileConfig>("", &mut keys);
    // `backends` entries are a string or this table (an untagged enum, opaque to the walk).
    keys_of::<WeightedBackend>("upstreams.backends", &mut keys);
    keys
}

/// The keys in the first column of the tables under `## Every key`.
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/configuration.md")).expect("docs");
    let section = text
        .split("\n## Every key\n")
        .nth(1)
        .expect("docs/configuration.md has a section \"## Every key\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

fn differences(what: &str, expected: &BTreeSet<String>, found: &BTreeSet<String>) -> String {
    let missing: Vec<_> = expected.difference(found).collect();
    let extra: Vec<_> = found.difference(expected).collect();
    format!("{what}: missing {missing:?}; not in the schema {extra:?}")
}

#[test]
fn every_schema_key_is_documented_and_every_documented_key_exists() {
    let schema = schema();
    let docs = documented();
    assert!(schema.leaves.len() > 100, "{:?}", schema.leaves);
    assert!(
        schema.leaves == docs,
        "{}",
        differences("docs/configuration.md", &schema.leaves, &docs)
    );
}

#[test]
fn the_reference_config_sets_every_key() {
    let schema = schema();
    let text = std::fs::read_to_string(format!("{ROOT}/conf/reference.toml")).expect("reference");
    let table: toml::Table = text.parse().expect("conf/reference.toml is TOML");
    let set = keys_in_toml(&table, &schema);
    assert!(
        schema.leaves == set,
        "{}",
        differences("conf/reference.toml", &schema.leaves, &set)
    );
}

/// The walk sees what a test would miss by hand: a new field is a new key.
#[test]
fn the_schema_walk_finds_keys_in_every_kind_of_place() {
    let leaves = schema().leaves;
    for key in [
        "server.grace_period",             // a struct with defaults
        "tls.pairs.cert",                  // an array of tables in an optional section
        "upstreams.health_check.interval", // a duration in an optional table
        "upstreams.backends.weight",       // the table form of an untagged entry
        "sites.routes.respond.headers",    // a free-form table, one key
        "sites.routes.rate_limit.burst",   // an inline table
        "notify.webhooks.events",          // a list of enum values
    ] {
        assert!(leaves.contains(key), "{key} in {leaves:?}");
    }
    assert!(!leaves.contains("tls.pairs"), "sections are not keys");
}

/// `ROOT/conf/NAME` copied into a directory laid out as the repository is, with the approved
/// roots and the demo PKI that `make demo-certs` writes; `menshen check` on it.
fn check_shipped(name: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    support::shipped::lay_out(dir.path());
    support::check(&dir.path().join("conf").join(name))
}

#[test]
fn the_reference_config_loads_with_menshen_check() {
    let (ok, out) = check_shipped("reference.toml");
    assert!(ok, "{out}");
    assert!(
        out.contains("configuration loaded: 2 listeners, 1 sites, 2 certificates (0 rejected), 2 upstreams with 3 backends"),
        "{out}"
    );
}

#[test]
fn the_demo_config_loads_with_menshen_check() {
    let (ok, out) = check_shipped("menshen.toml");
    assert!(ok, "{out}");
    assert!(out.contains("configuration loaded: 2 listeners"), "{out}");
}
