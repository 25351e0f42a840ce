//! Every configuration mistake gets a message naming the file, the key and the fix, and `load`
//! reports all of them at once.

mod support;

use menshen::config::{load, ConfigError};
use support::Env;

fn env() -> Env {
    let (env, root) = Env::with_approved_root("Approved Root");
    env.put_leaf("shop", &root, "shop.example.cn", 1);
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
    ];
    for (tls_extra, body, expected) in cases.iter().chain(POLICY_CASES) {
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
        "[access_log]\npath = \"a.log\"\nretention_days = 180\n",
        "access_log.retention_days: 180 is below 184: the Cybersecurity Law (Art. 21) requires \
         network logs to be kept for no less than six months",
    ),
    (
        "",
        "[policy]\ndeny = [\"10.0.0.0/33\"]\n",
        "policy.deny: \"10.0.0.0/33\" is not an IP address or CIDR",
    ),
    (
        "",
        "[policy]\ncipher_suites = [\"TLS_RSA_WITH_RC4_128_MD5\"]\n",
        "policy.cipher_suites: \"TLS_RSA_WITH_RC4_128_MD5\" is not a supported cipher suite",
    ),
    (
        "",
        "[policy]\nmin_tls_version = \"1.1\"\n",
        "policy.min_tls_version: \"1.1\" is not \"1.2\" or \"1.3\"",
    ),
    (
        "",
        "[policy]\nrate_limit = { requests_per_second = 0.0, burst = 1 }\n",
        "policy.rate_limit.requests_per_second: must be a positive number",
    ),
    (
        "",
        "[policy]\nheader_read_timeout_ms = 0\n",
        "policy.header_read_timeout_ms: must be at least 1 (milliseconds)",
    ),
];

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
fn demo_config_is_valid_and_documents_every_section() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/menshen.toml"))
        .expect("demo config");
    let parsed: Result<menshen::config::file::FileConfig, _> = toml::from_str(&text);
    let file = parsed.expect("demo config parses with the schema");
    assert_eq!(file.listeners.len(), 2);
    for key in [
        "[server]",
        "[tls]",
        "[dns]",
        "[reload]",
        "[[upstreams]]",
        "[upstreams.health_check]",
        "[[sites]]",
        "[[sites.routes]]",
        "[policy]",
        "[[policy.takedowns]]",
        "[access_log]",
        "icp = ",
        "[admin]",
        "[log]",
        "[[tls.pairs]]",
        "https_redirect_port",
    ] {
        assert!(text.contains(key), "demo config documents {key}");
    }
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
