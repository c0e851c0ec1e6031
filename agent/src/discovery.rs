//! Finding a controller through Bonjour (xgrid-wire.md §1): browse `_xgrid._tcp` and take
//! either the first controller that resolves (Apple's `BindToFirstAvailable`) or the one
//! advertising a given service name (`ResolveNameAsNetService`).
//!
//! A resolution can arrive in pieces: often the IPv6 link-local address first and the IPv4
//! address a moment later. A link-local address needs the right interface and fails in
//! ways that are hard to read, so a resolution that has only one is held for
//! [`LINK_LOCAL_HOLD`] in case an IPv4 address follows, and used only if none does.
//!
//! Every search starts a Bonjour daemon of its own and stops it when done: a fresh daemon
//! has no cache, so a controller that restarted on another port or moved to another
//! address is found where it is now, never where it was.

use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use mdns_sd::{ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent};
use xgrid_protocol::peer::Address;

/// The Bonjour service type of Xgrid controllers, with mdns-sd's domain.
pub const SERVICE_TYPE: &str = "_xgrid._tcp.local.";

/// How long a resolution with only an IPv6 link-local address waits for an IPv4 one.
pub const LINK_LOCAL_HOLD: Duration = Duration::from_millis(1500);

/// Where the agent's controller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerLocation {
    /// A host name or address and port, as configured (`--controller`).
    Host(Address),
    /// Whatever Bonjour finds.
    Bonjour(Search),
}

impl From<Address> for ControllerLocation {
    fn from(address: Address) -> ControllerLocation {
        ControllerLocation::Host(address)
    }
}

/// Which advertised controller a Bonjour search is after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// The first controller that resolves (`BindToFirstAvailable`).
    FirstAvailable,
    /// The controller whose service instance name is this, compared without regard to
    /// case as DNS does (`ResolveNameAsNetService`).
    Named(String),
}

impl fmt::Display for Search {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Search::FirstAvailable => f.write_str("controller"),
            Search::Named(name) => write!(f, "controller advertised as {name:?}"),
        }
    }
}

/// Why a search found nothing.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot start Bonjour browsing: {0}")]
    Daemon(String),
    #[error("Bonjour browsing stopped unexpectedly")]
    Stopped,
    #[error("Bonjour found no {what} within {:.1} s", .waited.as_secs_f32())]
    NotFound { what: String, waited: Duration },
}

/// A controller found: where to connect, and its service name when Bonjour found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub address: Address,
    pub service: Option<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service {
            Some(name) => write!(f, "{name:?} at {}", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// Where to connect for `location`: the configured address as it is, or a fresh Bonjour
/// search that waits as long as it takes (the caller cancels it by dropping the future).
pub async fn locate(location: &ControllerLocation) -> Result<Located, DiscoveryError> {
    match location {
        ControllerLocation::Host(address) => Ok(Located {
            address: address.clone(),
            service: None,
        }),
        ControllerLocation::Bonjour(search) => find(search, None).await,
    }
}

/// Browse for `search` until a controller is chosen, or for at most `wait`.
pub async fn find(search: &Search, wait: Option<Duration>) -> Result<Located, DiscoveryError> {
    let browser = Browser::start()?;
    let mut chooser = Chooser::new(search.clone(), LINK_LOCAL_HOLD);
    let started = Instant::now();
    let give_up = wait.map(|w| started + w);
    loop {
        let wake = match (chooser.deadline(), give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let event = match wake {
            None => browser.events.recv_async().await,
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                match tokio::time::timeout_at(at, browser.events.recv_async()).await {
                    Ok(event) => event,
                    Err(_) => {
                        let now = Instant::now();
                        if let Some(found) = chooser.expire(now) {
                            return Ok(found.located());
                        }
                        if give_up.is_some_and(|g| now >= g) {
                            return Err(DiscoveryError::NotFound {
                                what: search.to_string(),
                                waited: now - started,
                            });
                        }
                        continue;
                    }
                }
            }
        };
        match event {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                if let Some(found) =
                    chooser.offer(Sighting::from_resolved(&service), Instant::now())
                {
                    return Ok(found.located());
                }
            }
            Ok(_) => {}
            Err(_) => return Err(DiscoveryError::Stopped),
        }
    }
}

/// A Bonjour daemon browsing for controllers; stopped when dropped.
struct Browser {
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
}

impl Browser {
    fn start() -> Result<Browser, DiscoveryError> {
        let daemon = ServiceDaemon::new().map_err(|e| DiscoveryError::Daemon(e.to_string()))?;
        match daemon.browse(SERVICE_TYPE) {
            Ok(events) => Ok(Browser { daemon, events }),
            Err(e) => {
                let _ = daemon.shutdown();
                Err(DiscoveryError::Daemon(e.to_string()))
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The daemon's thread ends once it reads this; nothing to wait for.
        let _ = self.daemon.shutdown();
    }
}

/// One resolution of a controller's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The service instance name, unescaped (`node7`, not `node7._xgrid._tcp.local.`).
    pub instance: String,
    /// Every address, with the advertised port (and the interface for IPv6).
    pub addresses: Vec<SocketAddr>,
}

impl Sighting {
    fn from_resolved(service: &ResolvedService) -> Sighting {
        let port = service.get_port();
        let mut addresses: Vec<SocketAddr> = service
            .get_addresses()
            .iter()
            .map(|ip| match ip {
                ScopedIp::V6(v6) => {
                    SocketAddr::V6(SocketAddrV6::new(*v6.addr(), port, 0, v6.scope_id().index))
                }
                other => SocketAddr::new(other.to_ip_addr(), port),
            })
            .collect();
        // The set has no order; sorting makes the choice among equals the same every time.
        addresses.sort();
        Sighting {
            instance: instance_name(service.get_fullname()),
            addresses,
        }
    }

    /// The address to connect to right away: IPv4 first, then a routable IPv6 address.
    fn usable_now(&self) -> Option<SocketAddr> {
        let v4 = self.addresses.iter().find(|a| a.is_ipv4());
        let routable_v6 = self.addresses.iter().find(|a| match a.ip() {
            IpAddr::V6(ip) => !ip.is_unicast_link_local(),
            IpAddr::V4(_) => false,
        });
        v4.or(routable_v6).copied()
    }
}

/// The controller chosen: its service name and the one address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub instance: String,
    pub address: SocketAddr,
}

impl Choice {
    fn located(&self) -> Located {
        let host = match self.address {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            // The system resolver reads `fe80::1%3` with its interface index.
            SocketAddr::V6(v6) if v6.scope_id() != 0 => format!("{}%{}", v6.ip(), v6.scope_id()),
            SocketAddr::V6(v6) => v6.ip().to_string(),
        };
        Located {
            address: Address {
                host,
                port: self.address.port(),
            },
            service: Some(self.instance.clone()),
        }
    }
}

/// Decides, resolution by resolution, which controller to use (no sockets, no clock).
#[derive(Debug)]
pub struct Chooser {
    search: Search,
    hold: Duration,
    /// A resolution with only link-local addresses, and until when it waits for better.
    held: Option<(Sighting, Instant)>,
}

impl Chooser {
    pub fn new(search: Search, hold: Duration) -> Chooser {
        Chooser {
            search,
            hold,
            held: None,
        }
    }

    /// A resolution arrived at `now`: the controller to use, if this settles it. Any
    /// controller wanted with an IPv4 or routable IPv6 address settles it at once, even
    /// while another one's link-local resolution is held: that one is not usable yet.
    pub fn offer(&mut self, sighting: Sighting, now: Instant) -> Option<Choice> {
        if !self.wants(&sighting.instance) {
            return None;
        }
        if let Some(address) = sighting.usable_now() {
            self.held = None;
            return Some(Choice {
                instance: sighting.instance,
                address,
            });
        }
        if sighting.addresses.is_empty() {
            return None;
        }
        match &mut self.held {
            // A later resolution of the same controller replaces the addresses but keeps
            // the deadline, or updates could hold it forever.
            Some((held, _)) if held.instance.eq_ignore_ascii_case(&sighting.instance) => {
                *held = sighting;
            }
            Some(_) => {}
            None => self.held = Some((sighting, now + self.hold)),
        }
        None
    }

    /// When the held resolution, if any, is to be used as it is.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|(_, until)| *until)
    }

    /// The held resolution's link-local address, once its wait is over at `now`.
    pub fn expire(&mut self, now: Instant) -> Option<Choice> {
        match &self.held {
            Some((_, until)) if now >= *until => {}
            _ => return None,
        }
        let (sighting, _) = self.held.take()?;
        let address = *sighting.addresses.first()?;
        Some(Choice {
            instance: sighting.instance,
            address,
        })
    }

    fn wants(&self, instance: &str) -> bool {
        match &self.search {
            Search::FirstAvailable => true,
            Search::Named(name) => name.eq_ignore_ascii_case(instance),
        }
    }
}

/// The instance part of `node7._xgrid._tcp.local.`, with DNS escapes (`\.`, `\\`) undone.
pub fn instance_name(fullname: &str) -> String {
    let escaped = fullname
        .strip_suffix(SERVICE_TYPE)
        .and_then(|rest| rest.strip_suffix('.'))
        .unwrap_or(fullname);
    let mut name = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => name.extend(chars.next()),
            c => name.push(c),
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::ToSocketAddrs;

    fn sighting(instance: &str, addresses: &[&str]) -> Sighting {
        Sighting {
            instance: instance.to_string(),
            addresses: addresses
                .iter()
                .map(|a| a.parse().expect("socket address"))
                .collect(),
        }
    }

    const LINK_LOCAL: &str = "[fe80::1%2]:4111";

    #[test]
    fn ipv4_is_used_at_once_and_preferred_over_ipv6() {
        let mut chooser = Chooser::new(Search::FirstAvailable, LINK_LOCAL_HOLD);
        let now = Instant::now();
        let found = chooser
            .offer(
                sighting("ctl", &[LINK_LOCAL, "[2001:db8::5]:4111", "192.0.2.7:4111"]),
                now,
            )
            .expect("an IPv4 address settles it");
        assert_eq!(found.address, "192.0.2.7:4111".parse().expect("addr"));
        assert_eq!(found.instance, "ctl");
    }

    #[test]
    fn a_routable_ipv6_address_needs_no_wait() {
        let mut chooser = Chooser::new(Search::FirstAvailable, LINK_LOCAL_HOLD);
        let found = chooser
            .offer(
                sighting("ctl", &[LINK_LOCAL, "[2001:db8::5]:4200"]),
                Instant::now(),
            )
            .expect("routable IPv6 settles it");
        assert_eq!(found.address, "[2001:db8::5]:4200".parse().expect("addr"));
    }

    #[test]
    fn link_local_only_is_held_and_an_ipv4_that_follows_wins() {
        let mut chooser = Chooser::new(Search::FirstAvailable, Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(chooser.offer(sighting("ctl", &[LINK_LOCAL]), t0), None);
        assert_eq!(chooser.deadline(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(chooser.expire(t0 + Duration::from_secs(1)), None);
        let later = t0 + Duration::from_millis(300);
        let found = chooser
            .offer(sighting("ctl", &[LINK_LOCAL, "192.0.2.7:4111"]), later)
            .expect("IPv4 arrived");
        assert_eq!(found.address, "192.0.2.7:4111".parse().expect("addr"));
        assert_eq!(chooser.deadline(), None, "nothing is held any more");
    }

    #[test]
    fn link_local_only_is_used_when_nothing_better_comes() {
        let mut chooser = Chooser::new(Search::FirstAvailable, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(chooser.offer(sighting("ctl", &[LINK_LOCAL]), t0), None);
        // An update of the same controller does not push the deadline back.
        let update = t0 + Duration::from_millis(900);
        assert_eq!(
            chooser.offer(sighting("ctl", &[LINK_LOCAL, "[fe80::2%2]:4111"]), update),
            None
        );
        assert_eq!(chooser.deadline(), Some(t0 + Duration::from_secs(1)));
        let found = chooser
            .expire(t0 + Duration::from_secs(1))
            .expect("the wait is over");
        assert_eq!(found.address, LINK_LOCAL.parse().expect("addr"));
        assert_eq!(chooser.expire(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn another_controller_with_ipv4_is_taken_over_a_held_one() {
        let mut chooser = Chooser::new(Search::FirstAvailable, LINK_LOCAL_HOLD);
        let t0 = Instant::now();
        assert_eq!(chooser.offer(sighting("first", &[LINK_LOCAL]), t0), None);
        assert_eq!(
            chooser.offer(sighting("second", &["[fe80::9%2]:4111"]), t0),
            None,
            "a second link-local-only controller does not replace the first"
        );
        let found = chooser
            .expire(t0 + LINK_LOCAL_HOLD)
            .expect("the first one held");
        assert_eq!(found.instance, "first");

        let mut chooser = Chooser::new(Search::FirstAvailable, LINK_LOCAL_HOLD);
        assert_eq!(chooser.offer(sighting("first", &[LINK_LOCAL]), t0), None);
        let found = chooser
            .offer(sighting("second", &["192.0.2.9:4111"]), t0)
            .expect("usable now");
        assert_eq!(found.instance, "second");
    }

    #[test]
    fn a_named_search_ignores_other_controllers() {
        let mut chooser = Chooser::new(Search::Named("Lab Grid".into()), LINK_LOCAL_HOLD);
        let now = Instant::now();
        assert_eq!(
            chooser.offer(sighting("other", &["192.0.2.1:4111"]), now),
            None
        );
        assert_eq!(chooser.offer(sighting("lab grid", &[]), now), None);
        let found = chooser
            .offer(sighting("lab grid", &["192.0.2.2:4111"]), now)
            .expect("the name matches without regard to case");
        assert_eq!(found.address, "192.0.2.2:4111".parse().expect("addr"));
    }

    #[test]
    fn instance_names_are_unescaped() {
        assert_eq!(instance_name("node7._xgrid._tcp.local."), "node7");
        assert_eq!(
            instance_name("Lab\\.Grid \\\\ 2._xgrid._tcp.local."),
            "Lab.Grid \\ 2"
        );
        assert_eq!(instance_name("odd"), "odd");
    }

    #[test]
    fn a_link_local_choice_keeps_its_interface_for_the_resolver() {
        let choice = Choice {
            instance: "ctl".into(),
            address: "[fe80::1%1]:4111".parse().expect("addr"),
        };
        let located = choice.located();
        assert_eq!(located.address.host, "fe80::1%1");
        assert_eq!(located.service.as_deref(), Some("ctl"));
        // The system resolver reads the interface back (numeric: no lookup is sent).
        let resolved: Vec<SocketAddr> = (located.address.host.as_str(), located.address.port)
            .to_socket_addrs()
            .expect("numeric scoped address")
            .collect();
        match resolved.first() {
            Some(SocketAddr::V6(v6)) => assert_eq!(v6.scope_id(), 1),
            other => panic!("expected an IPv6 address, got {other:?}"),
        }
        let v4 = Choice {
            instance: "ctl".into(),
            address: "192.0.2.7:4300".parse().expect("addr"),
        };
        assert_eq!(v4.located().address.to_string(), "192.0.2.7:4300");
    }
}
