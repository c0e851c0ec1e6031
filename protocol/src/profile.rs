//! The BEEP profile URIs that Xgrid peers offer and start (xgrid-wire.md §2).

pub const GSS: &str = "http://www.apple.com/beep/GSS";
pub const FAILOVER: &str = "http://www.apple.com/beep/xgrid/controller/failover";
pub const TWO_WAY_RANDOM: &str = "http://www.apple.com/beep/xgrid/authentication/two-way-random";
pub const AGENT: &str = "http://www.apple.com/beep/xgrid/controller/agent";
pub const CLIENT: &str = "http://www.apple.com/beep/xgrid/controller/client";

/// What our controller's greeting lists, in Apple's order. GSS (Kerberos) and failover are
/// left out: we cannot serve them, and clients only look for failover to learn whether a
/// second controller exists (xgrid-wire.md §2 allows this).
pub const CONTROLLER_GREETING: [&str; 3] = [TWO_WAY_RANDOM, AGENT, CLIENT];

/// The fixed user names of the two-way-random profile.
pub const CLIENT_USER: &str = "one-xgrid-client";
pub const AGENT_USER: &str = "one-xgrid-agent";
/// Alternative names Apple's controller also accepts for local peers.
pub const LOCAL_CLIENT_USER: &str = "local-xgrid-client";
pub const LOCAL_AGENT_USER: &str = "local-xgrid-agent";
