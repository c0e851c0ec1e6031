-- The tasks placed on agents now, found without walking an agent's history: every scheduling
-- round counts each agent's placed tasks, and through `tasks_on_agents` that count read
-- every task the agent ever ran (finished tasks keep their agent).
CREATE INDEX tasks_placed ON tasks (agent_id)
    WHERE state IN ('Assigned', 'Running', 'Stopped') AND agent_id IS NOT NULL;
