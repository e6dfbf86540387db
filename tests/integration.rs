//! End-to-end tests: the real gateway over real TLS on 127.0.0.1, a recording stand-in for
//! the kubelet's read-only port, and test PKI generated at run time. One binary, to keep
//! link time down.

mod common;

mod integration {
    pub mod authentication;
    pub mod authorization;
    pub mod bootstrap;
    pub mod clients;
    pub mod decisions;
    pub mod deployment;
    pub mod diagnose_go;
    pub mod forwarding;
    pub mod identity;
    pub mod limits;
    pub mod logs;
    pub mod ops;
    pub mod paths;
    pub mod reload;
    pub mod secure;
    pub mod startup;
    pub mod tls;
    pub mod tools;
    pub mod webhooks;
}
