//! The closed vocabularies of Xgrid messages (xgrid-wire.md §4, §5.4): job, task, agent and
//! grid states and the control verbs. Each is read in any case and written exactly.

use std::fmt;

/// An enumeration that travels as one of a fixed set of strings.
pub trait WireEnum: Sized + Copy {
    /// The accepted strings, for error messages.
    const EXPECTED: &'static str;
    fn as_str(self) -> &'static str;
    /// Lenient: any case, surrounding blanks ignored.
    fn parse(text: &str) -> Option<Self>;
}

// One declaration gives the enum, its exact wire strings, a case-insensitive parser and
// `Display`, so the strings are written down once.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The exact wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }

            /// Lenient: any case, surrounding blanks ignored.
            pub fn parse(text: &str) -> Option<$name> {
                let text = text.trim();
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(text))
            }
        }

        impl WireEnum for $name {
            const EXPECTED: &'static str = concat!("one of" $(, " `", $wire, "`")+);
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
            fn parse(text: &str) -> Option<$name> {
                $name::parse(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// `jobStatus` of a job (§5.4); suspension is a separate flag.
    JobStatus {
        Pending = "Pending",
        Prepared = "Prepared",
        Running = "Running",
        Canceling = "Canceling",
        Canceled = "Canceled",
        Failing = "Failing",
        Failed = "Failed",
        Finishing = "Finishing",
        Finished = "Finished",
    }
}

wire_enum! {
    /// `taskState` reported by agents.
    TaskState {
        Pending = "Pending",
        Running = "Running",
        Stopped = "Stopped",
        Terminated = "Terminated",
        Failed = "Failed",
    }
}

wire_enum! {
    /// `agentState` in agent attributes, and `agentStatus` in an agent's own status
    /// (where only Available and Unavailable occur).
    AgentState {
        Offline = "Offline",
        Available = "Available",
        Unavailable = "Unavailable",
    }
}

wire_enum! {
    /// Whether a grid has work.
    GridStatus {
        Idle = "Idle",
        Working = "Working",
    }
}

wire_enum! {
    /// `control` of a `jobControl` request.
    JobAction {
        Cancel = "cancel",
        Remove = "remove",
        Suspend = "suspend",
        Resume = "resume",
        Restart = "restart",
    }
}

wire_enum! {
    /// `control` of a controller's `taskControl` request to an agent.
    TaskAction {
        Start = "start",
        /// Suspends the task.
        Stop = "stop",
        Cancel = "cancel",
    }
}

wire_enum! {
    /// `control` of a `gridControl` request.
    GridAction {
        Add = "add",
        Remove = "remove",
        Rename = "rename",
        MakeDefault = "makeDefault",
    }
}

wire_enum! {
    /// What a task asks for when it reports an error through `<xgrid>` output.
    TaskErrorKind {
        AgentUnsuitableForJob = "agentUnsuitableForJob",
        AgentUnsuitableForTask = "agentUnsuitableForTask",
        FailJob = "failJob",
        RetryJob = "retryJob",
        RetryTask = "retryTask",
    }
}

wire_enum! {
    /// `xgridUnavailableReason` of a checkpointing agent's `agentStatus` (docs/migration.md):
    /// why it reports `Unavailable`.
    UnavailableReason {
        /// The machine's owner is back (input activity, or load not caused by grid tasks).
        Owner = "owner",
        /// The agent got SIGTERM and is evacuating its tasks.
        Shutdown = "shutdown",
    }
}

wire_enum! {
    /// `disposition` of a `checkpointRelease` request: what the source agent does with a
    /// checkpointed task and its images.
    CheckpointDisposition {
        /// The restore elsewhere failed: the frozen task runs on here.
        Resume = "resume",
        /// The task runs elsewhere now: kill the frozen one silently, remove its directory.
        Cancel = "cancel",
        /// The controller holds the stream (periodic checkpoint): only the images go.
        Discard = "discard",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exact_and_reads_any_case() {
        assert_eq!(JobAction::Cancel.as_str(), "cancel");
        assert_eq!(JobAction::parse("CANCEL"), Some(JobAction::Cancel));
        assert_eq!(
            GridAction::parse(" makedefault "),
            Some(GridAction::MakeDefault)
        );
        assert_eq!(GridAction::MakeDefault.to_string(), "makeDefault");
        assert_eq!(JobStatus::parse("finished"), Some(JobStatus::Finished));
        assert_eq!(TaskState::parse("Exploded"), None);
        assert_eq!(
            AgentState::parse("unavailable"),
            Some(AgentState::Unavailable)
        );
        assert_eq!(
            TaskErrorKind::parse("retrytask"),
            Some(TaskErrorKind::RetryTask)
        );
        assert_eq!(GridStatus::Working.as_str(), "Working");
        assert_eq!(TaskAction::Stop.as_str(), "stop");
    }

    #[test]
    fn every_variant_round_trips_and_is_listed() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(*s));
            assert!(JobStatus::EXPECTED.contains(&format!("`{s}`")));
        }
        assert_eq!(JobStatus::ALL.len(), 9);
        assert_eq!(TaskState::ALL.len(), 5);
    }
}
