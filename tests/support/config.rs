//! The body of a test's config (what follows the listeners and `[tls]` that `Env::config_text`
//! writes), built from the parts tests write most: upstreams on loopback ports, sites with the
//! test ICP number, their routes. Anything else goes in as written (`raw`, `keys`).

use std::fmt;

/// An ICP filing number of the right form, for every test site.
pub const ICP: &str = "京ICP备16063439号-1";

/// Config text, section by section.
#[derive(Default)]
pub struct Config {
    text: String,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Text as written: a section the builder does not know (`[admin]`, `[policy]`, ...).
    pub fn raw(mut self, toml: &str) -> Config {
        self.text.push('\n');
        self.text.push_str(toml.trim_matches('\n'));
        self.text.push('\n');
        self
    }

    /// More keys, as written, for the section just added (`tls = true`, `strip_prefix = true`).
    pub fn keys(mut self, toml: &str) -> Config {
        self.text.push_str(toml.trim_matches('\n'));
        self.text.push('\n');
        self
    }

    /// One more `[[listeners]]`, named `name`, on the loopback `port`, with `keys` (`tls = true`).
    pub fn listener(self, name: &str, port: u16, keys: &str) -> Config {
        self.raw(&format!(
            "[[listeners]]\nname = {name:?}\naddr = \"127.0.0.1:{port}\""
        ))
        .keys(keys)
    }

    /// `[admin]` on `port`, taking reloads with `admin::TOKEN` (whose file it writes into `env`).
    pub fn admin(self, env: &super::Env, port: u16) -> Config {
        self.raw(&super::admin::section(env, port))
    }

    /// `[access_log]` written to `path`; more keys with `keys`.
    pub fn access_log(self, path: &str) -> Config {
        self.raw(&format!("[access_log]\npath = {path:?}"))
    }

    /// A process-wide `[[error_pages]]` for `statuses`, its page given by `keys`
    /// (`template = ".."`, or `file = ".."`, `language = ".."`).
    pub fn error_page(self, statuses: &[u16], keys: &str) -> Config {
        self.raw(&format!("[[error_pages]]\nstatus = {statuses:?}"))
            .keys(keys)
    }

    /// An error page of the site just added, as `error_page` for the process.
    pub fn site_error_page(self, statuses: &[u16], keys: &str) -> Config {
        self.raw(&format!("[[sites.error_pages]]\nstatus = {statuses:?}"))
            .keys(keys)
    }

    /// `[[upstreams]]` named `name` with a backend on each loopback port.
    pub fn upstream(self, name: &str, ports: &[u16]) -> Config {
        let backends: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        self.upstream_at(name, &backends)
    }

    /// `[[upstreams]]` named `name` with these backends (`host:port`).
    pub fn upstream_at(self, name: &str, backends: &[String]) -> Config {
        let backends: Vec<String> = backends.iter().map(|b| format!("{b:?}")).collect();
        self.raw(&format!(
            "[[upstreams]]\nname = {name:?}\nbackends = [{}]",
            backends.join(", ")
        ))
    }

    /// `[[sites]]` named `name` for `hosts`; the routes that follow are its.
    pub fn site(self, name: &str, hosts: &[&str]) -> Config {
        self.site_filed(name, ICP, hosts)
    }

    /// A site, as `site`, under the ICP number `icp`.
    pub fn site_filed(self, name: &str, icp: &str, hosts: &[&str]) -> Config {
        let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
        self.raw(&format!(
            "[[sites]]\nname = {name:?}\nicp = {icp:?}\nhosts = [{}]",
            hosts.join(", ")
        ))
    }

    /// A route of the site from `prefix` to the upstream `upstream`.
    pub fn proxy(self, prefix: &str, upstream: &str) -> Config {
        self.route(prefix, &format!("upstream = {upstream:?}"))
    }

    /// A route of the site from `prefix` that menshen answers with `body`.
    pub fn respond(self, prefix: &str, body: &str) -> Config {
        self.route(prefix, &format!("respond = {{ body = {body:?} }}"))
    }

    /// A route of the site from `prefix` with its keys as written.
    pub fn route(self, prefix: &str, keys: &str) -> Config {
        self.raw(&format!("[[sites.routes]]\nprefix = {prefix:?}"))
            .keys(keys)
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Config {
    fn as_ref(&self) -> &str {
        &self.text
    }
}
