//! Every configuration mistake gets a message naming the file, the key and the fix, and `load`
//! reports all of them at once.

mod support;

use menshen::config::{load, ConfigError};
use support::Env;

fn env() -> Env {
    let (env, _) = Env::with_shop();
    env
}

fn errors_of(env: &Env, tls_extra: &str, body: &str) -> Vec<String> {
    env.write_config(tls_extra, body);
    match load(&env.path("menshen.toml"), None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ConfigError::to_string).collect(),
    }
}

use support::SHOP_SITE as SITE;

#[test]
fn valid_config_loads() {
    let env = env();
    assert_eq!(errors_of(&env, "", SITE), Vec::<String>::new());
}

#[test]
fn each_mistake_is_named_with_its_key_and_fix() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "[server]\nthreds = 2\n", "unknown field `threds`"),
        ("", "[[sites]]\nname = \"x\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"x.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nupstream = \"nope\"\n",
         "site \"x\": routes[0].upstream: no [[upstreams]] named \"nope\""),
        ("", "[[sites]]\nname = \"x\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"x.cn\"]\n[[sites.routes]]\nprefix = \"api\"\nrespond = { body = \"\" }\n",
         "site \"x\": routes[0].prefix: \"api\" must start with /"),
        ("", "[[sites]]\nname = \"x\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"x.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"\" }\nredirect = { to = \"https://a\" }\n",
         "needs exactly one of upstream = \"NAME\", respond = { ... } or redirect = { ... }"),
        ("", "[[sites]]\nname = \"x\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"shop.example.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"\" }\n",
         "\"shop.example.cn\" is already served by site \"shop\""),
        ("", "[[sites]]\nname = \"x\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"bad host\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"\" }\n",
         "site \"x\": hosts: \"bad host\" is not a host name, IP address or *.wildcard"),
        ("", "[[upstreams]]\nname = \"u\"\nbackends = [\"nohost\"]\n",
         "upstream \"u\": backends[0]: \"nohost\" is not ip:port or hostname:port"),
        ("", "[[upstreams]]\nname = \"u\"\nbackends = []\n",
         "upstream \"u\": backends is empty"),
        ("", "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\n[upstreams.health_check]\nkind = \"http\"\n",
         "upstream \"u\": health_check.path: kind = \"http\" needs a path"),
        ("", "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\nhash_key = \"cookie\"\n",
         "upstream \"u\": hash_key: \"cookie\" is not client_ip, path or header:NAME"),
        ("", "[dns]\nresolvers = [\"223.5.5.5\"]\n",
         "dns.resolvers[0]: \"223.5.5.5\" is not ip:port"),
        ("default_certificate = \"nope\"", "",
         "tls.default_certificate: \"nope\" names no certificate pair"),
        ("", "[otel]\nendpoint = \"127.0.0.1:4318\"\n",
         "otel.endpoint: \"127.0.0.1:4318\" is not an http:// or https:// URL (e.g. \"http://otel-collector:4318/v1/traces\")"),
        ("", "[otel]\nendpoint = \"http://c:4318/v1/traces\"\nsampling_ratio = 1.5\n",
         "otel.sampling_ratio: 1.5 is not a share from 0 to 1 (1: every trace, 0.1: one in ten)"),
        ("", "[otel]\nendpoint = \"http://c:4318/v1/traces\"\nservice_name = \" \"\n",
         "otel.service_name: is empty (e.g. \"menshen-edge-bj\")"),
    ];
    for (tls_extra, body, expected) in cases
        .iter()
        .chain(POLICY_CASES)
        .chain(ERROR_PAGE_CASES)
        .chain(DURATION_CASES)
        .chain(RENAMED_CASES)
        .chain(RETRY_CASES)
    {
        let env = env();
        let errors = errors_of(&env, tls_extra, &format!("{SITE}\n{body}"));
        let file = env.path("menshen.toml").display().to_string();
        assert!(
            errors
                .iter()
                .any(|e| e.contains(expected) && e.starts_with(&file)),
            "expected an error containing {expected:?} naming {file}, got {errors:#?}"
        );
    }
}

/// A route's timeouts and retries, an upstream's retry budget.
const RETRY_CASES: &[(&str, &str, &str)] = &[
    (
        "",
        "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\n[[sites]]\nname = \"r\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"r.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nupstream = \"u\"\nretries = { tries = 9 }\n",
        "site \"r\": routes[0].retries.tries: 9 is not 1 to 5 (attempts in all; 1 turns retries off)",
    ),
    (
        "",
        "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\n[[sites]]\nname = \"r\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"r.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nupstream = \"u\"\nretries = { on = [\"500\"] }\n",
        "site \"r\": routes[0].retries.on: \"500\" is not one of connect, reset, timeout, 429, 502, 503, 504",
    ),
    (
        "",
        "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\n[[sites]]\nname = \"r\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"r.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nupstream = \"u\"\nretries = { backoff = \"1s\" }\n",
        "site \"r\": routes[0].retries.backoff: is longer than max_backoff; lower it or raise max_backoff",
    ),
    (
        "",
        "[[sites]]\nname = \"r\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"r.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"\" }\ntotal_timeout = \"5s\"\n",
        "site \"r\": routes[0]: strip_prefix, replace_prefix, host_header, retries, cache and the timeouts only apply to upstream routes",
    ),
    (
        "",
        "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\nretry_budget = { percent = 150 }\n",
        "upstream \"u\": retry_budget.percent: 150 is not a share of 0 to 100",
    ),
    (
        "",
        "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\n[[sites]]\nname = \"r\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"r.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nupstream = \"u\"\nfirst_byte_timeout = 30\n",
        "first_byte_timeout",
    ),
];

/// Error page mistakes, process-wide and a site's.
const ERROR_PAGE_CASES: &[(&str, &str, &str)] = &[
    (
        "",
        "[[error_pages]]\nstatus = [200]\ntemplate = \"x\"\n",
        "error_pages[0].status: 200 is not an error status; pages are for 400-599",
    ),
    (
        "",
        "[[error_pages]]\nstatus = []\ntemplate = \"x\"\n",
        "error_pages[0].status: is empty; list the statuses it answers, e.g. [451] or [502, 503, 504]",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [451]\n",
        "error_pages[0]: needs exactly one of file = \"PATH\" or template = \"...\"",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [451]\nlanguage = \"zh_CN\"\ntemplate = \"x\"\n",
        "error_pages[0].language: \"zh_CN\" is not a language tag like \"zh-CN\" or \"en\"",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [451]\nlanguage = \"en\"\ntemplate = \"a\"\n\
         [[error_pages]]\nstatus = [403, 451]\nlanguage = \"en\"\ntemplate = \"b\"\n",
        "error_pages[1].status: 451 already has a page in \"en\"; list each status once per language",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [451]\nlanguage = \"en\"\ntemplate = \"a\"\n\
         [[error_pages]]\nstatus = [451]\ntemplate = \"b\"\n",
        "error_pages: status 451 has pages in several languages; give each a language = \"...\"",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [502]\ntemplate = \"<p>{{code}}</p>\"\n",
        "error_pages[0].template: {{code}} is not a value menshen knows (use {{request_id}}, \
         {{status}}, {{reason}}, {{site}}, {{host}} or {{client_ip}})",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [502]\ntemplate = \"<p>{{status</p>\"\n",
        "error_pages[0].template: a {{ is never closed by }}",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [502]\nfile = \"pages/nope.html\"\n",
        "error_pages[0].file: ",
    ),
    (
        "",
        "[[error_pages]]\nstatus = [502]\nfile = \"pages/nope.html\"\n",
        "pages/nope.html: cannot read it (No such file or directory (os error 2)); create it or \
         fix the path (relative to the config file)",
    ),
    (
        "",
        "[[sites.error_pages]]\nstatus = [99]\ntemplate = \"x\"\n",
        "site \"shop\": error_pages[0].status: 99 is not an error status; pages are for 400-599",
    ),
];

/// Policy and compliance mistakes.
const POLICY_CASES: &[(&str, &str, &str)] = &[
    (
        "",
        "[[sites]]\nname = \"nofiling\"\nhosts = [\"n.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"\" }\n",
        "site \"nofiling\": has no icp filing number; every site served in mainland China needs one",
    ),
    (
        "",
        "[[sites]]\nname = \"bad\"\nicp = \"12345\"\nhosts = [\"b.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"\" }\n",
        "site \"bad\": icp: \"12345\" is not an ICP filing number (expected like 京ICP备16063439号-1",
    ),
    (
        "",
        "[[sites]]\nname = \"psf\"\nicp = \"京ICP证110507号\"\npublic_security_filing = \"京公网安备123号\"\nhosts = [\"p.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"\" }\n",
        "site \"psf\": public_security_filing: \"京公网安备123号\" is not a public security filing number",
    ),
    (
        "",
        "[access_log]
path = \"a.log\"
retention = \"180d\"
",
        "access_log.retention: \"180d\" is below 184 days: the Cybersecurity Law (Art. 21) \
         requires network logs to be kept for no less than six months",
    ),
    (
        "",
        "[access_log]\npath = \"-\"\n",
        "access_log.path: \"-\" writes to standard output, which cannot be chained and sealed: \
         set access_log.tamper_evident = false",
    ),
    (
        "",
        "[policy]\ndeny = [\"10.0.0.0/33\"]\n",
        "policy.deny: \"10.0.0.0/33\" is not an IP address or CIDR",
    ),
    (
        "cipher_suites = [\"TLS_RSA_WITH_RC4_128_MD5\"]",
        "",
        "tls.cipher_suites: \"TLS_RSA_WITH_RC4_128_MD5\" is not a supported cipher suite",
    ),
    (
        "min_version = \"1.1\"",
        "",
        "tls.min_version: \"1.1\" is not \"1.2\" or \"1.3\"",
    ),
    (
        "",
        "[policy]\nrate_limit = { requests_per_second = 0.0, burst = 1 }\n",
        "policy.rate_limit.requests_per_second: must be a positive number",
    ),
    (
        "",
        "[policy]\nheader_read_timeout = \"0s\"\n",
        "policy.header_read_timeout: must be above 0s (e.g. \"10s\")",
    ),
];

/// Durations: one style, `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"21d"`; anything else is refused
/// with what a duration looks like.
const DURATION_CASES: &[(&str, &str, &str)] = &[
    (
        "",
        "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\nconnect_timeout = \"1 minute\"\n",
        "\"1 minute\" is not a duration as a string: a whole number and a unit, ms, s, m, h or d",
    ),
    (
        "",
        "[policy]\nsend_timeout = \"-5s\"\n",
        "\"-5s\" is not a duration as a string",
    ),
    (
        "",
        "[dns]\ntimeout = 10\n",
        "10 has no unit: write it as a string with one, e.g. \"10s\" or \"10ms\"",
    ),
    (
        "",
        "[dns]\nmin_ttl = \"10m\"\nmax_ttl = \"1m\"\n",
        "dns.min_ttl: 10m is above dns.max_ttl (1m)",
    ),
];

/// Keys of older configs: each names the key that replaced it, with the value converted.
const RENAMED_CASES: &[(&str, &str, &str)] = &[
    (
        "",
        "[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:1\"]\nconnect_timeout_ms = 500\n",
        "upstream \"u\": connect_timeout_ms: renamed: use connect_timeout = \"500ms\"",
    ),
    (
        "",
        "[policy]\nkeepalive_timeout_seconds = 75\n",
        "policy.keepalive_timeout_seconds: renamed: use keepalive_timeout = \"75s\"",
    ),
    (
        "",
        "[policy]\nmin_tls_version = \"1.3\"\n",
        "policy.min_tls_version: moved to [tls]: use min_version = \"1.3\" in the [tls] section",
    ),
    (
        "",
        "[policy]\nsession_resumption = false\n",
        "policy.session_resumption: moved to [tls]: use session_resumption = false in the [tls] section",
    ),
    (
        "expiry_warning_days = 30",
        "",
        "tls.expiry_warning_days: renamed: use expiry_warning = \"30d\"",
    ),
];

#[test]
fn an_old_config_gets_every_old_key_named_at_once() {
    let env = env();
    let body = format!(
        "{SITE}\n[dns]\ntimeout_ms = 1000\nmin_ttl_seconds = 5\n\n\
         [policy]\ncipher_suites = []\n"
    );
    let errors = errors_of(&env, "", &body);
    let file = env.path("menshen.toml").display().to_string();
    assert_eq!(
        errors,
        [
            format!("{file}: dns.min_ttl_seconds: renamed: use min_ttl = \"5s\" (durations are strings with a unit)"),
            format!("{file}: dns.timeout_ms: renamed: use timeout = \"1s\" (durations are strings with a unit)"),
            format!("{file}: policy.cipher_suites: moved to [tls]: use cipher_suites = [] in the [tls] section"),
        ]
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let env = env();
    let body = format!(
        "{SITE}\n[[upstreams]]\nname = \"u\"\nbackends = []\n\n[dns]\nresolvers = [\"x\"]\n"
    );
    let errors = errors_of(&env, "", &body);
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn bad_listener_address_and_missing_tls_section() {
    let env = env();
    let text = r#"
[[listeners]]
name = "a"
addr = "localhost:443"
tls = true
"#;
    env.write("menshen.toml", text);
    let errors: Vec<String> = load(&env.path("menshen.toml"), None)
        .expect_err("must fail")
        .iter()
        .map(ToString::to_string)
        .collect();
    let joined = errors.join("\n");
    assert!(
        joined.contains("listeners[0].addr: \"localhost:443\" is not ip:port"),
        "{joined}"
    );
    assert!(
        joined.contains("has tls = true but there is no [tls] section"),
        "{joined}"
    );
}

#[test]
fn check_refuses_a_site_without_an_icp_filing() {
    let env = env();
    env.write_config(
        "",
        "[[sites]]\nname = \"shop\"\nhosts = [\"shop.example.cn\"]\n[[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"ok\" }\n",
    );
    let (ok, out) = env.check();
    assert!(!ok, "check must fail");
    assert!(
        out.contains("site \"shop\": has no icp filing number"),
        "{out}"
    );
}

#[test]
fn an_error_page_file_too_large_or_not_utf8_is_named() {
    let env = env();
    std::fs::write(env.path("big.html"), vec![b'x'; 256 * 1024 + 1]).expect("write");
    std::fs::write(env.path("latin1.html"), b"caf\xe9").expect("write");
    let body = format!(
        "{SITE}\n[[error_pages]]\nstatus = [502]\nfile = \"big.html\"\n\
         [[error_pages]]\nstatus = [504]\nfile = \"latin1.html\"\n"
    );
    let errors = errors_of(&env, "", &body).join("\n");
    let big = env.path("big.html").display().to_string();
    let latin1 = env.path("latin1.html").display().to_string();
    assert!(
        errors.contains(&format!(
            "error_pages[0].file: {big}: is 262145 bytes; an error page is at most 262144"
        )),
        "{errors}"
    );
    assert!(
        errors.contains(&format!(
            "error_pages[1].file: {latin1}: is not UTF-8; save the page as UTF-8"
        )),
        "{errors}"
    );
}
