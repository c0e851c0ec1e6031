//! A client connection to the controller: the settings from the command line and the
//! environment, and typed requests whose `{error = CODE}` replies become [`CliError`]s.

use std::time::Duration;

use xgrid_agent::discovery::{self, Search};
use xgrid_protocol::envelope::Envelope;
use xgrid_protocol::messages::{ClientRequest, ErrorCode};
use xgrid_protocol::peer::{self, Address, Incoming, Peer, PeerOptions, PeerRole};
use xgrid_protocol::plist::Dictionary;

use crate::args::{AuthMethod, ConnectionArgs};
use crate::error::CliError;

pub const HOSTNAME_VARIABLE: &str = "XGRID_CONTROLLER_HOSTNAME";
pub const PASSWORD_VARIABLE: &str = "XGRID_CONTROLLER_PASSWORD";

/// How long a session close may take before the client gives up on a clean close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `-h NAME` browses Bonjour for a service called NAME when NAME is no host.
pub const BONJOUR_WAIT: Duration = Duration::from_secs(3);

/// Where and how to connect, after environment defaults.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// The controller as given: `HOST[:PORT]`, or a Bonjour service name (see
    /// [`ConnectionSettings::locate`]).
    pub controller: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("controller", &self.controller)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

impl ConnectionSettings {
    /// Apply `$XGRID_CONTROLLER_HOSTNAME` and `$XGRID_CONTROLLER_PASSWORD` (read through
    /// `env`) where the options are missing. `-auth None` sends no password at all.
    pub fn resolve(
        args: &ConnectionArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnectionSettings, CliError> {
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        if args.auth == Some(AuthMethod::Kerberos) {
            return Err(CliError::KerberosUnsupported);
        }
        let host = non_empty(args.hostname.clone())
            .or_else(|| non_empty(env(HOSTNAME_VARIABLE)))
            .ok_or(CliError::NoController)?;
        let password = match args.auth {
            Some(AuthMethod::None) => None,
            _ => args
                .password
                .clone()
                .or_else(|| non_empty(env(PASSWORD_VARIABLE))),
        };
        Ok(ConnectionSettings {
            controller: host,
            password,
        })
    }

    /// Where to connect: the controller as `HOST[:PORT]` when that reads as one and the
    /// host resolves, else the controller Bonjour finds advertised under that name within
    /// [`BONJOUR_WAIT`].
    pub async fn locate(&self) -> Result<Address, CliError> {
        let as_host = match Address::parse(&self.controller) {
            Ok(address) => {
                let lookup = (address.host.as_str(), address.port);
                match tokio::net::lookup_host(lookup).await.map(|mut a| a.next()) {
                    Ok(Some(_)) => return Ok(address),
                    Ok(None) => "the host name has no address".to_string(),
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        let name = self.controller.trim().to_string();
        match discovery::find(&Search::Named(name.clone()), Some(BONJOUR_WAIT)).await {
            Ok(found) => Ok(found.address),
            Err(bonjour) => Err(CliError::ControllerNotFound {
                name,
                as_host,
                bonjour: bonjour.to_string(),
            }),
        }
    }
}

/// An open client connection.
#[derive(Debug)]
pub struct Client {
    peer: Peer,
    incoming: Incoming,
}

impl Client {
    pub async fn connect(settings: &ConnectionSettings) -> Result<Client, CliError> {
        let options = PeerOptions {
            role: PeerRole::Client,
            password: settings.password.clone(),
        };
        let address = settings.locate().await?;
        let (peer, incoming) = peer::connect(&address, options).await?;
        Ok(Client { peer, incoming })
    }

    /// Send `request` and return the reply's payload; an error reply becomes
    /// [`CliError::Refused`], naming the job or grid the request was about.
    pub async fn call(&self, request: &ClientRequest) -> Result<Dictionary, CliError> {
        let reply = self
            .peer
            .request(request.name(), request.to_payload())
            .await?;
        match ErrorCode::from_payload(&reply.payload) {
            Some(code) => Err(CliError::Refused {
                request: request.name().to_string(),
                code,
                subject: subject(request),
            }),
            None => Ok(reply.payload),
        }
    }

    /// The next notification (or request) from the controller; `None` once the connection
    /// has ended.
    pub async fn next_message(&mut self) -> Option<Envelope> {
        self.incoming.recv().await
    }

    /// Close the session, without waiting long for a controller that does not answer.
    pub async fn close(self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.peer.close()).await;
    }
}

fn subject(request: &ClientRequest) -> Option<String> {
    use ClientRequest as R;
    match request {
        R::JobAttributes(q)
        | R::JobSpecification(q)
        | R::JobResults(q)
        | R::JobLatestResults(q)
        | R::JobFinalResults(q)
        | R::JobLog(q) => Some(format!("job {}", q.job_identifier)),
        R::JobControl(c) => Some(format!("job {}", c.job_identifier)),
        R::JobAddTask(t) => Some(format!("job {}", t.job_identifier)),
        R::GridAttributes(q) | R::GridJobList(q) | R::GridAgentList(q) => {
            Some(grid_name(&q.grid_identifier))
        }
        R::JobSubmission(s) => s.grid_identifier.as_deref().map(grid_name),
        _ => None,
    }
}

fn grid_name(grid: &str) -> String {
    if grid.is_empty() {
        "the default grid".to_string()
    } else {
        format!("grid {grid}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn options_win_over_the_environment() {
        let vars = env(&[
            (HOSTNAME_VARIABLE, "envhost:4200"),
            (PASSWORD_VARIABLE, "envpw"),
        ]);
        let from_env = ConnectionSettings::resolve(&ConnectionArgs::default(), &vars).expect("env");
        assert_eq!(from_env.controller, "envhost:4200");
        assert_eq!(from_env.password.as_deref(), Some("envpw"));

        let args = ConnectionArgs {
            hostname: Some("cli".into()),
            password: Some("clipw".into()),
            auth: None,
        };
        let from_args = ConnectionSettings::resolve(&args, &vars).expect("args");
        assert_eq!(from_args.controller, "cli");
        assert_eq!(from_args.password.as_deref(), Some("clipw"));
    }

    #[test]
    fn missing_host_kerberos_and_auth_none() {
        let nothing = env(&[]);
        assert!(matches!(
            ConnectionSettings::resolve(&ConnectionArgs::default(), &nothing),
            Err(CliError::NoController)
        ));
        let kerberos = ConnectionArgs {
            hostname: Some("h".into()),
            auth: Some(AuthMethod::Kerberos),
            ..ConnectionArgs::default()
        };
        let err = ConnectionSettings::resolve(&kerberos, &nothing).expect_err("kerberos");
        assert!(err.to_string().starts_with("Kerberos is not supported"));
        let none = ConnectionArgs {
            hostname: Some("h".into()),
            password: Some("pw".into()),
            auth: Some(AuthMethod::None),
        };
        let settings = ConnectionSettings::resolve(&none, &nothing).expect("none");
        assert_eq!(settings.password, None);
    }

    /// A host that resolves is used as it is, with no Bonjour browsing (a numeric address
    /// needs no lookup either, so nothing leaves the machine). Names that are no host are
    /// looked up through Bonjour only in `tests/bonjour.rs`, inside network namespaces.
    #[tokio::test]
    async fn a_host_that_resolves_needs_no_bonjour() {
        for (given, host, port) in [
            ("127.0.0.1:4200", "127.0.0.1", 4200),
            ("[::1]", "::1", 4111),
        ] {
            let settings = ConnectionSettings {
                controller: given.into(),
                password: None,
            };
            let address = settings.locate().await.expect("a numeric address");
            assert_eq!(
                (address.host.as_str(), address.port),
                (host, port),
                "{given}"
            );
        }
    }
}
