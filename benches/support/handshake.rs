//! Full TLS 1.3 handshakes in memory (a rustls client and menshen's rustls server exchanging
//! flights through byte buffers, no sockets, on one thread), timed on the server's side and in
//! all. The times are the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which other processes
//! on a busy machine do not stretch as they do the wall clock. Shared by the `tls` and
//! `post_quantum` benches; the crate root declares `mod pki` for it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use menshen::tls::provider::{TlsProtocol, TlsSource};
use menshen::tls::store::{CertSources, CertStore};
use menshen::tls::ApprovedRoots;
use rustls::crypto::SupportedKxGroup;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, NamedGroup, ServerConfig, ServerConnection};

use crate::pki;

/// The name the one-site store serves (the store's first certificate).
pub const SITE_NAME: &str = "host0.example.cn";

/// A certificate store loaded the way menshen loads one: `n` ECDSA P-256 pairs written to a
/// directory, under a throwaway approved root, half exact names, half wildcards. Returns the
/// directory (keep it alive), the root's PEM and the store.
pub fn store(n: usize) -> (tempfile::TempDir, String, CertStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = pki::Ca::root("Bench Approved Root");
    std::fs::write(dir.path().join("root.pem"), &root.pem).expect("root");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).expect("live");
    for i in 0..n {
        let name = if i % 2 == 0 {
            format!("host{i}.example.cn")
        } else {
            format!("*.w{i}.example.cn")
        };
        let leaf = root.issue(&pki::LeafSpec::new(&[name.as_str()], i as u64 + 1));
        std::fs::write(live.join(format!("c{i}.crt")), &leaf.pem).expect("crt");
        std::fs::write(live.join(format!("c{i}.key")), &leaf.key_pem).expect("key");
    }
    let roots = ApprovedRoots::load(&[dir.path().join("root.pem")]).expect("roots");
    let sources = CertSources {
        dirs: vec![live],
        pairs: Vec::<(String, PathBuf, PathBuf)>::new(),
    };
    let load = CertStore::load(&sources, None, &roots, None, menshen::tls::cert::unix_now());
    assert!(load.errors.is_empty(), "{:?}", load.errors.first());
    assert_eq!(load.store.certs().len(), n);
    (dir, root.pem, load.store)
}

/// Picks the certificate by SNI from a store, as the listeners' resolver does from the snapshot.
#[derive(Debug)]
struct BySni(CertStore);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.resolve(hello.server_name())
    }
}

/// One site's TLS as menshen serves it: the server configuration compiled from the default
/// `[tls]` policy (post-quantum on) over a one-certificate store, and the roots a client needs.
pub struct Site {
    _dir: tempfile::TempDir,
    /// menshen's rustls server configuration.
    pub server: Arc<ServerConfig>,
    roots: Arc<rustls::RootCertStore>,
}

impl Site {
    /// Builds the site.
    pub fn new() -> Self {
        let (dir, root_pem, store) = store(1);
        let protocol = TlsProtocol::compile(TlsSource::default()).expect("default policy");
        let sessions = TlsProtocol::session_cache();
        let server = protocol
            .server_config(Arc::new(BySni(store)), None, &sessions)
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
            roots.add(der.expect("root")).expect("add root");
        }
        Self {
            _dir: dir,
            server: Arc::new(server),
            roots: Arc::new(roots),
        }
    }

    /// A TLS 1.3 client offering `groups` in that order (a key share for the first, and for
    /// its classical half when it is a hybrid whose half is also offered), never resuming.
    pub fn client(&self, groups: Vec<&'static dyn SupportedKxGroup>) -> Arc<ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.kx_groups = groups;
        let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        client.resumption = rustls::client::Resumption::disabled();
        Arc::new(client)
    }
}

/// CPU time this thread has used.
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The CPU time one handshake took.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// The server's reads, processing and writes.
    pub server: Duration,
    /// Both sides, from making the client (its key shares) to both being done.
    pub total: Duration,
    /// The group the server chose.
    pub group: NamedGroup,
}

/// One full handshake between `client` and `server`, in memory.
pub fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> Timed {
    let name = rustls::pki_types::ServerName::try_from(SITE_NAME).expect("name");
    let begin = cpu_now();
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut s = ServerConnection::new(server.clone()).expect("server");
    let mut on_server = Duration::ZERO;
    let mut to_server = Vec::with_capacity(8192);
    let mut to_client = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        to_server.clear();
        while c.wants_write() {
            c.write_tls(&mut to_server).expect("client write");
        }
        let start = cpu_now();
        let mut rd = &to_server[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
        }
        s.process_new_packets().expect("server handshake");
        to_client.clear();
        while s.wants_write() {
            s.write_tls(&mut to_client).expect("server write");
        }
        on_server += cpu_now() - start;
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
        }
        c.process_new_packets().expect("client handshake");
    }
    let total = cpu_now() - begin;
    let group = s
        .negotiated_key_exchange_group()
        .expect("a key exchange group")
        .name();
    Timed {
        server: on_server,
        total,
        group,
    }
}
