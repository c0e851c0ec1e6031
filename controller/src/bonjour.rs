//! The controller's Bonjour advertisement (xgrid-wire.md §1): `_xgrid._tcp` on the port it
//! listens on, with the `servicePrincipal` TXT record, so agents and clients find it by
//! itself or by its service name. Only on the interface it listens on when that is one
//! address; never when it listens on loopback, where no other machine could reach it.

use std::net::SocketAddr;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};

/// The Bonjour service type of Xgrid controllers, with mdns-sd's domain.
pub const SERVICE_TYPE: &str = "_xgrid._tcp.local.";

/// The TXT record's one key.
pub const SERVICE_PRINCIPAL_KEY: &str = "servicePrincipal";

/// How long stopping waits for the goodbye packets that tell agents the controller left.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the controller could not advertise itself.
#[derive(Debug, thiserror::Error)]
pub enum BonjourError {
    #[error("cannot start Bonjour: {0}")]
    Daemon(String),
    #[error("cannot advertise the Bonjour service {name:?}: {reason}")]
    Service { name: String, reason: String },
}

/// Whether advertising on `listen` makes sense: `Err` says why not.
pub fn advertisable(listen: SocketAddr) -> Result<(), &'static str> {
    if listen.ip().is_loopback() {
        Err("the controller listens on loopback only, where no other machine can reach it")
    } else {
        Ok(())
    }
}

/// `xgrid/<host>@<REALM>`, the form of a Kerberos service principal. Kerberos is off in
/// this controller, so the realm is made up as Kerberos would name it: the host's domain in
/// capitals, or `LOCAL` for a host name without one.
pub fn service_principal(hostname: &str) -> String {
    let realm = match hostname.split_once('.') {
        Some((_, domain)) if !domain.is_empty() => domain.trim_end_matches('.').to_uppercase(),
        _ => "LOCAL".to_string(),
    };
    format!("xgrid/{hostname}@{realm}")
}

/// The running advertisement; [`Advertisement::stop`] withdraws it.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Advertisement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertisement")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Advertisement {
    /// Advertise the controller listening on `listen` (its real port, not 0) as
    /// `service_name`, with `hostname` in the `servicePrincipal` record.
    pub fn start(
        service_name: &str,
        hostname: &str,
        listen: SocketAddr,
    ) -> Result<Advertisement, BonjourError> {
        let service_error = |reason: String| BonjourError::Service {
            name: service_name.to_string(),
            reason,
        };
        if service_name.trim().is_empty() {
            return Err(service_error("the name is empty".into()));
        }
        // The SRV record's target: the host's own name under `.local.`.
        let short_host = hostname.split('.').next().unwrap_or_default();
        let short_host = if short_host.is_empty() {
            "xgrid-controller"
        } else {
            short_host
        };
        let properties = [(SERVICE_PRINCIPAL_KEY, service_principal(hostname))];
        let one_address = (!listen.ip().is_unspecified()).then_some(listen.ip());
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            service_name,
            &format!("{short_host}.local."),
            one_address
                .map(|ip| vec![ip])
                .unwrap_or_default()
                .as_slice(),
            listen.port(),
            &properties[..],
        )
        .map_err(|e| service_error(e.to_string()))?;
        let mut info = match one_address {
            Some(_) => info,
            // Listening everywhere: answer with whatever addresses the host has.
            None => info.enable_addr_auto(),
        };
        let daemon = ServiceDaemon::new().map_err(|e| BonjourError::Daemon(e.to_string()))?;
        let fullname = info.get_fullname().to_string();
        if let Some(ip) = one_address {
            // Answer and announce only where agents can connect.
            info.set_interfaces(vec![IfKind::Addr(ip)]);
            let restricted = daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(IfKind::Addr(ip)));
            if let Err(e) = restricted {
                let _ = daemon.shutdown();
                return Err(BonjourError::Daemon(e.to_string()));
            }
        } else if listen.ip().is_ipv4() {
            // 0.0.0.0 takes no IPv6 connections: do not hand out IPv6 addresses.
            let _ = daemon.disable_interface(IfKind::IPv6);
        }
        if let Err(e) = daemon.register(info) {
            let _ = daemon.shutdown();
            return Err(service_error(e.to_string()));
        }
        Ok(Advertisement { daemon, fullname })
    }

    /// The advertised `<name>._xgrid._tcp.local.`.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Withdraw the service (agents browsing see it go) and stop the Bonjour daemon.
    pub async fn stop(self) {
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _: Result<Result<UnregisterStatus, _>, _> =
                tokio::time::timeout(GOODBYE_TIMEOUT, status.recv_async()).await;
        }
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_names_the_host_and_a_realm() {
        assert_eq!(service_principal("node7"), "xgrid/node7@LOCAL");
        assert_eq!(
            service_principal("ctl.lab.example.org"),
            "xgrid/ctl.lab.example.org@LAB.EXAMPLE.ORG"
        );
    }

    #[test]
    fn loopback_is_never_advertised() {
        for listen in ["127.0.0.1:4111", "[::1]:4111"] {
            let listen: SocketAddr = listen.parse().expect("addr");
            assert!(advertisable(listen).is_err(), "{listen}");
        }
        for listen in ["0.0.0.0:4111", "192.0.2.1:0", "[::]:4111"] {
            let listen: SocketAddr = listen.parse().expect("addr");
            assert!(advertisable(listen).is_ok(), "{listen}");
        }
    }
}
