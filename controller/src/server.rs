//! Starting and stopping a controller: open the job store, note which agents held tasks when
//! the controller last stopped, listen, and run the accept loop and the scheduling loop until
//! shutdown. The daemon and in-process tests both start controllers through [`Controller`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::Config;
use crate::connection;
use crate::migration;
use crate::scheduling;
use crate::shared::Shared;
use crate::store::{Store, StoreError};
use crate::web_view::WebView;

/// How long shutdown waits for sessions to close before dropping them.
const SESSION_GRACE: Duration = Duration::from_secs(2);

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {address}: {source} (is another controller running there?)")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve the dashboard on {address}: {source} (choose another --web address, or --no-web)")]
    Web {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running controller. Dropping it stops it too, without waiting.
#[derive(Debug)]
pub struct Controller {
    local_addr: SocketAddr,
    web_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Option<JoinHandle<()>>,
}

impl Controller {
    /// Opens the store in `config.data_dir`, binds `config.listen` and starts serving.
    pub async fn start(config: Config) -> Result<Controller, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let store = Store::open(config.store_path()).await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
            address: config.listen,
            source,
        })?;
        let web_listener = match config.web {
            Some(address) => Some(bind_web(address).await?),
            None => None,
        };
        let web_addr = web_listener.as_ref().map(|(_, address)| *address);
        let shared = Arc::new(Shared::new(store, config));
        expect_agents_back(&shared).await?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let scheduler = tokio::spawn(scheduling::run(Arc::clone(&shared), shutdown_rx.clone()));
        let balancer = tokio::spawn(migration::run(Arc::clone(&shared), shutdown_rx.clone()));
        let web = web_listener.map(|(listener, _)| {
            tokio::spawn(serve_web(
                Arc::clone(&shared),
                listener,
                shutdown_rx.clone(),
            ))
        });
        let accepting = tokio::spawn(accept_loop(Arc::clone(&shared), listener, shutdown_rx));
        let tasks = tokio::spawn(async move {
            let _ = accepting.await;
            let _ = scheduler.await;
            let _ = balancer.await;
            if let Some(web) = web {
                let _ = web.await;
            }
        });
        shared.reschedule();
        Ok(Controller {
            local_addr,
            web_addr,
            shared,
            shutdown,
            tasks: Some(tasks),
        })
    }

    /// The address the controller listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The dashboard's address (with the real port when 0 was asked for); `None` without one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// The state the controller's services share (the store, the event hub…).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, closes every session and waits for the controller's tasks to end.
    /// Tasks out on agents stay attached to them, to be picked up again after a restart.
    pub async fn shutdown(mut self) {
        self.shared.begin_stopping();
        let _ = self.shutdown.send(true);
        if let Some(tasks) = self.tasks.take() {
            let _ = tasks.await;
        }
        self.shared.log("stopped");
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.shared.begin_stopping();
        let _ = self.shutdown.send(true);
    }
}

/// Tasks still placed on agents come from before the restart: their agents get
/// `agent_grace` to come back and report them.
async fn expect_agents_back(shared: &Shared) -> Result<(), StoreError> {
    let attached = shared.store.attached_tasks().await?;
    if attached.is_empty() {
        return Ok(());
    }
    let agents: BTreeSet<_> = attached.iter().map(|t| t.agent).collect();
    let deadline = Instant::now() + shared.config.agent_grace;
    for agent in &agents {
        shared.expect_recovery(*agent, deadline);
    }
    shared.log(format!(
        "{} task(s) were out on {} agent(s) when the controller stopped; waiting up to {} s for those agents to come back",
        attached.len(),
        agents.len(),
        shared.config.agent_grace.as_secs()
    ));
    Ok(())
}

async fn bind_web(address: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Web { address, source };
    let listener = TcpListener::bind(address).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

/// Runs the dashboard and its view's sampling until shutdown.
async fn serve_web(shared: Arc<Shared>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let view = Arc::new(WebView::new(Arc::clone(&shared)));
    let sampling = tokio::spawn(Arc::clone(&view).run(shutdown.clone()));
    let mut stop = shutdown;
    let stopped = async move {
        // A dropped sender means the controller is gone: stop as well.
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = xgrid_web::serve(listener, view, stopped).await {
        shared.log(format!("the dashboard stopped: {e}"));
    }
    let _ = sampling.await;
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    sessions.spawn(connection::serve(
                        Arc::clone(&shared),
                        stream,
                        peer,
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    shared.log(format!("cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished sessions so the set does not grow with every connection.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let closing = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(SESSION_GRACE, closing).await.is_err() {
        sessions.abort_all();
    }
}
