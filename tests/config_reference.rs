//! The reference stays whole: every key of the schema is in `docs/configuration.md`'s tables and
//! set in `conf/reference.toml`, nothing is listed that the schema lacks, and the shipped
//! configs load with `menshen check`.

mod support;

use std::collections::BTreeSet;

use menshen::config::file::{FileConfig, WeightedBackend};
use support::pki::{Ca, LeafSpec};
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
    let d = dir.path();
    for sub in ["conf", "certs/approved", "certs/demo/live"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    // The config and the example files the reference names beside it (a takedown list, shipping
    // credentials).
    for file in std::fs::read_dir(format!("{ROOT}/conf")).expect("conf") {
        let file = file.expect("entry");
        if file.file_type().expect("type").is_file() {
            std::fs::copy(file.path(), d.join("conf").join(file.file_name())).expect("copy");
        }
    }
    for entry in std::fs::read_dir(format!("{ROOT}/certs/approved")).expect("approved") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            d.join("certs/approved").join(entry.file_name()),
        )
        .expect("copy root");
    }
    let ca = Ca::root("menshen demo root CA (DEMO ONLY, never approve in production)");
    let leaf = ca.issue(
        &LeafSpec::new(&["localhost", "demo.menshen.test"], 1)
            .ip("127.0.0.1")
            .valid(-1, 397),
    );
    let write = |rel: &str, text: &str| std::fs::write(d.join(rel), text).expect("write");
    write("certs/demo/ca.crt", &ca.pem);
    write("certs/demo/live/localhost.crt", &leaf.pem);
    write("certs/demo/live/localhost.key", &leaf.key_pem);
    let chain_key = menshen::observe::chain::ChainKey::generate().expect("chain key");
    write("certs/demo/access-log.key", &chain_key);
    support::check(&d.join("conf").join(name))
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
