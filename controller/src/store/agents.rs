//! Agents: registration with cookies, reported load and state, grid membership, the tasks
//! placed on each agent (also after a controller restart), and ART results.

use std::collections::HashMap;
use std::fmt::Write as _;

use sqlx::{Connection, SqliteConnection};

use super::checkpoints::{hold_agent_tasks, AGENT_LOST};
use super::jobs::job_exists;
use super::tasks::{attached_tasks_where, requeue_where, OnAgents, ON_AGENTS};
use super::{
    date, db_id, now, small_count, wire_id, AgentId, AgentLoad, AgentRecord, AgentRegistration,
    AgentState, ArtVerdict, AttachedTask, GridId, JobId, Result, Store, StoreError,
};

impl Store {
    /// `agentRegistration`. Without a cookie (or with an empty one) the agent is new: it gets
    /// a fresh random cookie and joins the default grid. With a cookie, the agent that holds
    /// it is updated and keeps its identifier, grid and placed tasks; a cookie no agent holds
    /// is refused with [`StoreError::InvalidCookie`]. The agent is marked Available: its
    /// agentStatus notifications correct that if its owner is using the machine.
    pub async fn register_agent(
        &self,
        registration: &AgentRegistration,
    ) -> Result<(AgentId, String)> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let cookie = registration.cookie.as_deref().filter(|c| !c.is_empty());
        let (agent, cookie) = match cookie {
            Some(cookie) => {
                let agent: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM agents WHERE cookie = ?")
                        .bind(cookie)
                        .fetch_optional(&mut *tx)
                        .await?;
                let agent = agent.ok_or(StoreError::InvalidCookie)?;
                sqlx::query(
                    "UPDATE agents SET name = ?, maximum_task_count = ?, maximum_cpu_power = ?,
                         core_megahertz = ?, custom = ?, extensions = ?, state = 'Available',
                         last_seen = ?, cpu_features = ?, unavailable_reason = NULL
                     WHERE id = ?",
                )
                .bind(&registration.name)
                .bind(registration.maximum_task_count)
                .bind(registration.maximum_cpu_power)
                .bind(registration.core_megahertz)
                .bind(&registration.custom)
                .bind(&registration.extensions)
                .bind(now())
                .bind(&registration.cpu_features)
                .bind(agent)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM agent_addresses WHERE agent_id = ?")
                    .bind(agent)
                    .execute(&mut *tx)
                    .await?;
                (agent, cookie.to_string())
            }
            None => {
                let cookie = new_cookie()?;
                let agent = sqlx::query(
                    "INSERT INTO agents (name, cookie, grid_id, state, maximum_task_count,
                         maximum_cpu_power, core_megahertz, custom, extensions, last_seen,
                         cpu_features)
                     VALUES (?, ?, (SELECT id FROM grids WHERE is_default = 1), 'Available',
                             ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&registration.name)
                .bind(&cookie)
                .bind(registration.maximum_task_count)
                .bind(registration.maximum_cpu_power)
                .bind(registration.core_megahertz)
                .bind(&registration.custom)
                .bind(&registration.extensions)
                .bind(now())
                .bind(&registration.cpu_features)
                .execute(&mut *tx)
                .await?
                .last_insert_rowid();
                (agent, cookie)
            }
        };
        let addresses = registration
            .hostnames
            .iter()
            .map(|h| ("hostname", h))
            .enumerate()
            .chain(
                registration
                    .addresses
                    .iter()
                    .map(|a| ("address", a))
                    .enumerate(),
            );
        for (position, (kind, value)) in addresses {
            sqlx::query(
                "INSERT INTO agent_addresses (agent_id, kind, position, value) VALUES (?, ?, ?, ?)",
            )
            .bind(agent)
            .bind(kind)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((wire_id(agent)?, cookie))
    }

    /// The agent holding `cookie` (an agentStatus may come before the agentRegistration).
    pub async fn agent_by_cookie(&self, cookie: &str) -> Result<Option<AgentId>> {
        let agent: Option<i64> = sqlx::query_scalar("SELECT id FROM agents WHERE cookie = ?")
            .bind(cookie)
            .fetch_optional(&mut *self.readers.acquire().await)
            .await?;
        agent.map(wire_id).transpose()
    }

    pub async fn agent(&self, agent: AgentId) -> Result<AgentRecord> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        let mut agents = load_agents(&mut tx, Some(db_id(agent)), true).await?;
        tx.commit().await?;
        agents.pop().ok_or(StoreError::NoSuchAgent(agent))
    }

    /// Every agent, by identifier.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        let agents = load_agents(&mut tx, None, true).await?;
        tx.commit().await?;
        Ok(agents)
    }

    /// What an agentStatus notification reports; also stamps the agent as seen now.
    pub async fn update_agent_load(&self, agent: AgentId, load: AgentLoad) -> Result<()> {
        let result = sqlx::query(
            "UPDATE agents SET state = ?, current_cpu_power = ?, reported_task_count = ?,
                 last_seen = ?
             WHERE id = ?",
        )
        .bind(load.state.as_str())
        .bind(load.current_cpu_power)
        .bind(load.current_task_count)
        .bind(now())
        .bind(db_id(agent))
        .execute(&mut *self.writer.lock().await)
        .await?;
        agent_found(result.rows_affected(), agent)
    }

    /// The agent's connection closed. Its tasks stay attached: see
    /// [`Store::requeue_agent_tasks`] for an agent given up for lost.
    pub async fn set_agent_offline(&self, agent: AgentId) -> Result<()> {
        let result = sqlx::query(
            "UPDATE agents SET state = 'Offline', current_cpu_power = 0, reported_task_count = 0
             WHERE id = ?",
        )
        .bind(db_id(agent))
        .execute(&mut *self.writer.lock().await)
        .await?;
        agent_found(result.rows_affected(), agent)
    }

    /// Moves the agent to grid `grid`.
    pub async fn assign_agent_to_grid(&self, agent: AgentId, grid: GridId) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let grid_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM grids WHERE id = ?")
            .bind(db_id(grid))
            .fetch_optional(&mut *tx)
            .await?;
        if grid_exists.is_none() {
            return Err(StoreError::NoSuchGrid(grid));
        }
        let result = sqlx::query("UPDATE agents SET grid_id = ? WHERE id = ?")
            .bind(db_id(grid))
            .bind(db_id(agent))
            .execute(&mut *tx)
            .await?;
        agent_found(result.rows_affected(), agent)?;
        tx.commit().await?;
        Ok(())
    }

    /// The tasks placed on `agent` (Assigned, Running or Stopped).
    pub async fn agent_tasks(&self, agent: AgentId) -> Result<Vec<AttachedTask>> {
        let mut conn = self.readers.acquire().await;
        attached_tasks_where(&mut conn, OnAgents::Agent(db_id(agent))).await
    }

    /// Every task placed on some agent. After a restart these are the tasks that were out on
    /// agents when the controller stopped; each stays attached to its agent so that the
    /// controller can pick it up again when that agent registers with its cookie.
    pub async fn attached_tasks(&self) -> Result<Vec<AttachedTask>> {
        let mut conn = self.readers.acquire().await;
        attached_tasks_where(&mut conn, OnAgents::All).await
    }

    /// The agent is lost: its tasks with a kept checkpoint are held at the controller to be
    /// restored elsewhere (see [`Store::hold_agent_tasks`]); the others go back to Pending
    /// with one more attempt counted and the lost runs' partial results dropped, and its
    /// unfinished ART runs are forgotten so they can run elsewhere. Returns the tasks
    /// requeued.
    pub async fn requeue_agent_tasks(&self, agent: AgentId) -> Result<Vec<AttachedTask>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        hold_agent_tasks(&mut tx, agent, AGENT_LOST).await?;
        let requeued = requeue_where(&mut tx, OnAgents::Agent(db_id(agent))).await?;
        sqlx::query("DELETE FROM art_results WHERE agent_id = ? AND verdict = 'Measuring'")
            .bind(db_id(agent))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(requeued)
    }

    /// Records what the agent's run of the job's ART found (or that a run started:
    /// [`ArtVerdict::Measuring`]).
    pub async fn set_art_result(
        &self,
        job: JobId,
        agent: AgentId,
        art: &str,
        verdict: ArtVerdict,
        score: Option<f64>,
    ) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        job_exists(&mut tx, job).await?;
        let agent_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM agents WHERE id = ?")
            .bind(db_id(agent))
            .fetch_optional(&mut *tx)
            .await?;
        if agent_exists.is_none() {
            return Err(StoreError::NoSuchAgent(agent));
        }
        sqlx::query(
            "INSERT OR REPLACE INTO art_results (job_id, agent_id, art, verdict, score)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(db_id(job))
        .bind(db_id(agent))
        .bind(art)
        .bind(verdict.as_str())
        .bind(score)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn agent_found(rows_affected: u64, agent: AgentId) -> Result<()> {
    if rows_affected == 0 {
        Err(StoreError::NoSuchAgent(agent))
    } else {
        Ok(())
    }
}

/// 128 random bits as 32 hex digits: unguessable, and plain text in any plist.
fn new_cookie() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    let mut cookie = String::with_capacity(32);
    for byte in bytes {
        let _ = write!(cookie, "{byte:02x}");
    }
    Ok(cookie)
}

type AgentRow = (
    i64,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<f64>,
    // Tasks placed on it and ART runs under way.
    i64,
);

/// Every agent (or only agent `only`), with what is placed on it, and with its hostnames
/// and addresses unless `with_addresses` is false (then they are left empty).
pub(super) async fn load_agents(
    conn: &mut SqliteConnection,
    only: Option<i64>,
    with_addresses: bool,
) -> Result<Vec<AgentRecord>> {
    let filter = |column: &str| match only {
        Some(_) => format!("AND {column} = ?1"),
        None => String::new(),
    };
    let rows: Vec<AgentRow> = fetch_filtered(
        conn,
        &format!(
            // The tasks placed on each agent and its ART runs under way are counted in
            // the same statement: this runs every scheduling round, and each statement
            // costs a hop to SQLite's thread.
            "SELECT id, name, cookie, grid_id, state, maximum_task_count, maximum_cpu_power,
                    core_megahertz, current_cpu_power, reported_task_count, custom, extensions,
                    last_seen,
                    (SELECT count(*) FROM tasks INDEXED BY tasks_placed
                     WHERE tasks.agent_id = agents.id AND {ON_AGENTS})
                    + (SELECT count(*) FROM art_results
                       WHERE art_results.agent_id = agents.id AND verdict = 'Measuring')
             FROM agents WHERE 1 {} ORDER BY id",
            filter("id")
        ),
        only,
    )
    .await?;
    let mut agents = Vec::with_capacity(rows.len());
    let mut index: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
    for row in rows {
        let (
            id,
            name,
            cookie,
            grid,
            state,
            max_tasks,
            max_power,
            core,
            power,
            reported,
            custom,
            extensions,
            seen,
            placed,
        ) = row;
        index.insert(id, agents.len());
        agents.push(AgentRecord {
            id: wire_id(id)?,
            name,
            cookie,
            grid: wire_id(grid)?,
            state: AgentState::parse(&state)?,
            hostnames: Vec::new(),
            addresses: Vec::new(),
            maximum_task_count: small_count(max_tasks),
            maximum_cpu_power: small_count(max_power),
            core_megahertz: core.map(small_count),
            current_cpu_power: small_count(power),
            reported_task_count: small_count(reported),
            placed_task_count: small_count(placed),
            custom,
            extensions,
            last_seen: date(seen),
        });
    }
    let addresses: Vec<(i64, String, String)> = if with_addresses {
        fetch_filtered(
            conn,
            &format!(
                "SELECT agent_id, kind, value FROM agent_addresses WHERE 1 {}
                 ORDER BY agent_id, kind, position",
                filter("agent_id")
            ),
            only,
        )
        .await?
    } else {
        Vec::new()
    };
    for (agent, kind, value) in addresses {
        if let Some(record) = index.get(&agent).and_then(|&i| agents.get_mut(i)) {
            if kind == "hostname" {
                record.hostnames.push(value);
            } else {
                record.addresses.push(value);
            }
        }
    }
    Ok(agents)
}

/// Runs `sql`, binding `only` as `?1` when given.
async fn fetch_filtered<T>(
    conn: &mut SqliteConnection,
    sql: &str,
    only: Option<i64>,
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    let mut query = sqlx::query_as(sql);
    if let Some(value) = only {
        query = query.bind(value);
    }
    Ok(query.fetch_all(&mut *conn).await?)
}
