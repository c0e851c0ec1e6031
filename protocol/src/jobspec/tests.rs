use super::*;

macro_rules! dict {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut d = Dictionary::new();
        $(d.insert($key.to_string(), Value::from($value));)*
        d
    }};
}

fn array(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

fn file(bytes: &[u8], executable: &str) -> Dictionary {
    dict! { "fileData" => Value::Data(bytes.to_vec()), "isExecutable" => executable }
}

fn job_with_tasks(tasks: Dictionary) -> Dictionary {
    dict! { "name" => "test", "taskSpecifications" => tasks }
}

fn parse_err(job: Dictionary) -> JobSpecError {
    JobSpecification::from_plist(&job).expect_err("must be refused")
}

#[test]
fn reads_apples_cli_example() {
    let job = dict! {
        "applicationIdentifier" => "com.apple.xgrid.cli",
        "inputFiles" => Dictionary::new(),
        "name" => "/usr/bin/cal",
        "submissionIdentifier" => "abc",
        "taskSpecifications" => dict! {
            "0" => dict! {
                "arguments" => Value::Array(vec![Value::Integer(6), Value::from("2007")]),
                "command" => "/usr/bin/cal",
            },
        },
    };
    let spec = JobSpecification::from_plist(&job).expect("valid");
    assert_eq!(spec.name.as_deref(), Some("/usr/bin/cal"));
    assert_eq!(
        spec.application_identifier.as_deref(),
        Some("com.apple.xgrid.cli")
    );
    assert_eq!(spec.submission_identifier.as_deref(), Some("abc"));
    let task = &spec.tasks["0"];
    assert_eq!(task.command, "/usr/bin/cal");
    assert_eq!(task.arguments, ["6", "2007"]);
    assert!(spec.task_input_files("0").is_empty());

    // Written back it is exactly Apple's form (the integer argument now a string).
    let mut expected = job.clone();
    expected.insert(
        "taskSpecifications".into(),
        Value::from(dict! { "0" => dict! {
            "arguments" => array(&["6", "2007"]),
            "command" => "/usr/bin/cal",
        }}),
    );
    assert_eq!(spec.to_plist(), expected);
}

#[test]
fn prototype_is_inherited_and_overridden() {
    let job = dict! {
        "taskPrototypes" => dict! {
            "render" => dict! {
                "command" => "/usr/bin/povray",
                "arguments" => array(&["+W320"]),
                "environment" => dict! { "THREADS" => "2" },
                "inputStream" => "scene.pov",
            },
        },
        "taskSpecifications" => dict! {
            "0" => dict! { "taskPrototypeIdentifier" => "render" },
            "1" => dict! {
                "taskPrototypeIdentifier" => "render",
                "arguments" => array(&["+W640", "+H480"]),
                "environment" => dict! { "NICE" => "10" },
            },
        },
    };
    let spec = JobSpecification::from_plist(&job).expect("valid");
    let plain = &spec.tasks["0"];
    assert_eq!(plain.command, "/usr/bin/povray");
    assert_eq!(plain.arguments, ["+W320"]);
    assert_eq!(
        plain.environment.get("THREADS").map(String::as_str),
        Some("2")
    );
    assert_eq!(plain.input_stream.as_deref(), Some("scene.pov"));
    let custom = &spec.tasks["1"];
    assert_eq!(custom.command, "/usr/bin/povray");
    assert_eq!(custom.arguments, ["+W640", "+H480"]);
    // A task's own key replaces the prototype's whole value (no deep merge).
    assert_eq!(custom.environment.len(), 1);
    assert_eq!(
        custom.environment.get("NICE").map(String::as_str),
        Some("10")
    );

    // The canonical form carries the expanded tasks, not the prototypes.
    let written = spec.to_plist();
    assert!(!written.contains_key("taskPrototypes"));
    let tasks = written["taskSpecifications"].as_dictionary().expect("dict");
    let task0 = tasks["0"].as_dictionary().expect("dict");
    assert_eq!(task0.get("command"), Some(&Value::from("/usr/bin/povray")));
    assert!(!task0.contains_key("taskPrototypeIdentifier"));
}

#[test]
fn input_file_map_resolves_to_the_jobs_files() {
    let job = dict! {
        "inputFiles" => dict! {
            "chunks/part1" => file(b"first", "NO"),
            "chunks/part2" => file(b"second", "NO"),
            "tool" => file(b"#!/bin/sh\n", "YES"),
        },
        "taskSpecifications" => dict! {
            "0" => dict! { "command" => "./tool", "inputFileMap" => dict! { "input" => "chunks/part1" } },
            "1" => dict! { "command" => "./tool", "inputFileMap" => dict! { "input" => "chunks/part2", "tool" => "chunks/part1" } },
        },
    };
    let spec = JobSpecification::from_plist(&job).expect("valid");
    let t0 = spec.task_input_files("0");
    assert_eq!(&*t0["input"].data, b"first");
    assert!(!t0["input"].is_executable);
    // Every task also sees all of the job's files at their own paths.
    assert_eq!(
        t0.keys().copied().collect::<Vec<_>>(),
        ["chunks/part1", "chunks/part2", "input", "tool"]
    );
    assert_eq!(&*t0["tool"].data, b"#!/bin/sh\n");
    assert!(t0["tool"].is_executable);
    let t1 = spec.task_input_files("1");
    assert_eq!(&*t1["input"].data, b"second");
    // A mapped name wins over a job file at the same path.
    assert_eq!(&*t1["tool"].data, b"first");
    assert_eq!(
        spec.tasks["1"]
            .input_file_map
            .get("tool")
            .map(String::as_str),
        Some("chunks/part1")
    );
}

#[test]
fn no_tasks_is_refused() {
    assert_eq!(parse_err(dict! { "name" => "x" }), JobSpecError::NoTasks);
    let err = parse_err(job_with_tasks(Dictionary::new()));
    assert_eq!(err, JobSpecError::NoTasks);
    assert!(err.to_string().contains("no tasks"), "{err}");
}

#[test]
fn task_without_command_is_refused() {
    let err = parse_err(job_with_tasks(dict! {
        "0" => dict! { "command" => "/bin/true" },
        "seven" => dict! { "arguments" => array(&["x"]) },
    }));
    assert_eq!(err, JobSpecError::MissingCommand("seven".into()));
    assert!(err.to_string().contains("\"seven\""), "{err}");
    let err = parse_err(job_with_tasks(dict! { "0" => dict! { "command" => "" } }));
    assert_eq!(err, JobSpecError::MissingCommand("0".into()));
}

#[test]
fn unknown_prototype_is_refused() {
    let err = parse_err(job_with_tasks(dict! {
        "3" => dict! { "taskPrototypeIdentifier" => "ghost", "command" => "/bin/true" },
    }));
    assert_eq!(
        err,
        JobSpecError::UnknownPrototype {
            task: "3".into(),
            prototype: "ghost".into()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("\"3\"") && msg.contains("\"ghost\""), "{msg}");
}

#[test]
fn dependency_on_unknown_task_is_refused() {
    let err = parse_err(job_with_tasks(dict! {
        "0" => dict! { "command" => "/bin/true" },
        "1" => dict! { "command" => "/bin/true", "dependsOnTasks" => array(&["0", "9"]) },
    }));
    assert_eq!(
        err,
        JobSpecError::UnknownDependency {
            task: "1".into(),
            dependency: "9".into()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("\"1\"") && msg.contains("\"9\""), "{msg}");
}

#[test]
fn dependency_cycle_is_refused_and_named() {
    let task = |deps: &[&str]| dict! { "command" => "/bin/true", "dependsOnTasks" => array(deps) };
    let err = parse_err(job_with_tasks(dict! {
        "start" => task(&[]),
        "a" => task(&["start", "c"]),
        "b" => task(&["a"]),
        "c" => task(&["b"]),
        "after" => task(&["c"]),
    }));
    assert_eq!(
        err,
        JobSpecError::DependencyCycle(vec!["a".into(), "c".into(), "b".into(), "a".into()])
    );
    assert!(err.to_string().contains("a -> c -> b -> a"), "{err}");

    let err = parse_err(job_with_tasks(dict! { "5" => task(&["5"]) }));
    assert_eq!(
        err,
        JobSpecError::DependencyCycle(vec!["5".into(), "5".into()])
    );
}

#[test]
fn input_file_map_naming_a_missing_file_is_refused() {
    let err = parse_err(dict! {
        "inputFiles" => dict! { "present" => file(b"x", "NO") },
        "taskSpecifications" => dict! {
            "2" => dict! { "command" => "/bin/cat", "inputFileMap" => dict! { "in" => "absent" } },
        },
    });
    assert_eq!(
        err,
        JobSpecError::UnknownInputFile {
            task: "2".into(),
            name: "in".into(),
            key: "absent".into()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("\"2\"") && msg.contains("\"absent\""), "{msg}");
}

#[test]
fn paths_leaving_the_task_directory_are_refused() {
    let task = dict! { "0" => dict! { "command" => "/bin/true" } };
    for bad in [
        "/etc/passwd",
        "..",
        "../x",
        "a/../../x",
        "",
        "a//b",
        "a/",
        "a\0b",
        "./a",
    ] {
        let err = parse_err(dict! {
            "inputFiles" => dict! { bad => file(b"x", "NO") },
            "taskSpecifications" => task.clone(),
        });
        let JobSpecError::UnsafePath {
            ref context,
            ref path,
            ..
        } = err
        else {
            panic!("{bad:?}: {err:?}");
        };
        assert_eq!((context.as_str(), path.as_str()), ("inputFiles entry", bad));
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }

    let err = parse_err(dict! {
        "inputFiles" => dict! { "ok" => file(b"x", "NO") },
        "taskSpecifications" => dict! {
            "4" => dict! { "command" => "/bin/true", "inputFileMap" => dict! { "../escape" => "ok" } },
        },
    });
    assert!(
        matches!(err, JobSpecError::UnsafePath { ref path, .. } if path == "../escape"),
        "{err:?}"
    );
    assert!(err.to_string().contains("task \"4\""), "{err}");

    let err = parse_err(dict! {
        "artSpecifications" => dict! { "/usr/local/bin/art" => dict! { "artData" => Value::Data(vec![1]) } },
        "taskSpecifications" => task,
    });
    assert!(
        matches!(err, JobSpecError::UnsafePath { ref path, .. } if path == "/usr/local/bin/art"),
        "{err:?}"
    );
    assert!(err.to_string().contains("artSpecifications"), "{err}");
}

#[test]
fn nested_paths_are_fine() {
    let spec = JobSpecification::from_plist(&dict! {
        "inputFiles" => dict! { "dir/sub/file.txt" => file(b"x", "NO"), "..hidden" => file(b"y", "NO") },
        "taskSpecifications" => dict! { "0" => dict! { "command" => "cat" } },
    })
    .expect("valid");
    assert_eq!(spec.input_files.len(), 2);
}

#[test]
fn conditions_on_unknown_arts_and_wrong_types_are_refused() {
    let err = parse_err(dict! {
        "artConditions" => dict! { "speed" => dict! { "artMin" => "2" } },
        "taskSpecifications" => dict! { "0" => dict! { "command" => "x" } },
    });
    assert_eq!(err, JobSpecError::UnknownArt("speed".into()));

    let err = parse_err(job_with_tasks(
        dict! { "8" => dict! { "command" => "x", "arguments" => "-v" } },
    ));
    assert!(matches!(err, JobSpecError::WrongType { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "task \"8\" key \"arguments\": expected an array, found a string"
    );

    let err = parse_err(dict! {
        "inputFiles" => dict! { "f" => dict! { "isExecutable" => "YES" } },
        "taskSpecifications" => dict! { "0" => dict! { "command" => "x" } },
    });
    assert_eq!(
        err.to_string(),
        "input file \"f\" key \"fileData\" is missing"
    );
}

#[test]
fn lenient_numbers_and_booleans() {
    let job = dict! {
        "submissionIdentifier" => Value::Integer(12),
        "schedulerParameters" => dict! {
            "dependsOnJobs" => Value::Array(vec![Value::Integer(3), Value::from("4")]),
            "tasksMustStartSimultaneously" => "true",
            "minimumTaskCount" => "2",
        },
        "inputFiles" => dict! {
            "a" => file(b"1", "YES"),
            "b" => file(b"2", "no"),
            "c" => dict! { "fileData" => "text", "isExecutable" => Value::Boolean(true) },
            "d" => dict! { "fileData" => Value::Data(vec![]), "isExecutable" => Value::Integer(0) },
        },
        "artSpecifications" => dict! { "art" => dict! { "artData" => Value::Data(vec![0]), "isExecutable" => "YES" } },
        "artConditions" => dict! { "art" => dict! { "artMin" => "1.5", "artMax" => Value::Integer(9), "artEqual" => Value::Real(4.0) } },
        "taskSpecifications" => dict! { "0" => dict! { "command" => "x", "environment" => dict! { "N" => Value::Integer(5) } } },
    };
    let spec = JobSpecification::from_plist(&job).expect("valid");
    assert_eq!(spec.submission_identifier.as_deref(), Some("12"));
    assert_eq!(
        spec.scheduler,
        SchedulerParameters {
            depends_on_jobs: vec!["3".into(), "4".into()],
            tasks_must_start_simultaneously: true,
            minimum_task_count: Some(2),
        }
    );
    let exec: Vec<bool> = spec.input_files.values().map(|f| f.is_executable).collect();
    assert_eq!(exec, [true, false, true, false]);
    assert_eq!(&*spec.input_files["c"].data, b"text");
    assert_eq!(
        spec.art_conditions["art"],
        ArtCondition {
            min: Some(1.5),
            max: Some(9.0),
            equal: Some(4.0)
        }
    );
    assert_eq!(
        spec.tasks["0"].environment.get("N").map(String::as_str),
        Some("5")
    );

    let err = parse_err(dict! {
        "schedulerParameters" => dict! { "minimumTaskCount" => "many" },
        "taskSpecifications" => dict! { "0" => dict! { "command" => "x" } },
    });
    assert_eq!(
        err.to_string(),
        "schedulerParameters key \"minimumTaskCount\": \"many\" is not a whole number of at least 0"
    );
    let err = parse_err(dict! {
        "schedulerParameters" => dict! { "tasksMustStartSimultaneously" => "perhaps" },
        "taskSpecifications" => dict! { "0" => dict! { "command" => "x" } },
    });
    assert!(matches!(err, JobSpecError::BadValue { .. }), "{err:?}");
}

#[test]
fn round_trip_through_the_canonical_form() {
    let job = dict! {
        "name" => "render",
        "applicationIdentifier" => "com.apple.xgrid.cli",
        "submissionIdentifier" => "s1",
        "notificationEmail" => "me@example.org",
        "gridIdentifier" => "0",
        "schedulerParameters" => dict! { "dependsOnJobs" => array(&["7"]), "tasksMustStartSimultaneously" => "YES", "minimumTaskCount" => "3" },
        "schedulerHints" => dict! { "1" => "fast-mac" },
        "inputFiles" => dict! { "scene.pov" => file(b"camera{}", "NO"), "bin/tool" => file(&[0, 1, 2], "YES") },
        "artSpecifications" => dict! { "art.sh" => dict! { "artData" => Value::Data(b"echo 3".to_vec()), "isExecutable" => "YES", "artArguments" => array(&["-q"]) } },
        "artConditions" => dict! { "art.sh" => dict! { "artMin" => "0.1", "artEqual" => "3" } },
        "taskPrototypes" => dict! { "p" => dict! { "command" => "bin/tool", "environment" => dict! { "A" => "b" } } },
        "taskSpecifications" => dict! {
            "0" => dict! { "taskPrototypeIdentifier" => "p", "inputStream" => "scene.pov", "inputFileMap" => dict! { "in.pov" => "scene.pov" } },
            "1" => dict! { "command" => "/bin/echo", "arguments" => array(&["done"]), "dependsOnTasks" => array(&["0"]) },
        },
    };
    let spec = JobSpecification::from_plist(&job).expect("valid");
    let written = spec.to_plist();
    let again = JobSpecification::from_plist(&written).expect("canonical form is valid");
    assert_eq!(again, spec);
    assert_eq!(again.to_plist(), written);
    assert_eq!(spec.art_conditions["art.sh"].min, Some(0.1));
}

#[test]
fn empty_arguments_are_left_out() {
    let spec = JobSpecification::from_plist(&job_with_tasks(dict! {
        "0" => dict! { "command" => "/bin/date", "arguments" => Value::Array(vec![]) },
    }))
    .expect("valid");
    let written = spec.to_plist();
    let task = written["taskSpecifications"]
        .as_dictionary()
        .and_then(|t| t["0"].as_dictionary());
    assert_eq!(task, Some(&dict! { "command" => "/bin/date" }));
    assert_eq!(
        written.get("inputFiles"),
        Some(&Value::from(Dictionary::new()))
    );
}

#[test]
fn task_order_respects_dependencies_and_numeric_ids() {
    let task = |deps: &[&str]| dict! { "command" => "x", "dependsOnTasks" => array(deps) };
    let spec = JobSpecification::from_plist(&job_with_tasks(dict! {
        "10" => task(&[]),
        "2" => task(&[]),
        "1" => task(&["10"]),
        "merge" => task(&["1", "2", "10"]),
        "alpha" => task(&[]),
    }))
    .expect("valid");
    assert_eq!(
        spec.task_order().expect("acyclic"),
        ["2", "10", "1", "alpha", "merge"]
    );
}

#[test]
fn task_specifications_may_be_an_array() {
    let spec = JobSpecification::from_plist(&dict! {
        "taskSpecifications" => Value::Array(vec![
            Value::from(dict! { "command" => "a" }),
            Value::from(dict! { "command" => "b", "dependsOnTasks" => array(&["0"]) }),
        ]),
    })
    .expect("valid");
    assert_eq!(spec.tasks["1"].command, "b");
    assert_eq!(spec.task_order().expect("acyclic"), ["0", "1"]);
}

#[test]
fn art_condition_bounds() {
    let c = ArtCondition {
        min: Some(2.0),
        max: Some(5.0),
        equal: None,
    };
    assert!(c.accepts(2.0) && c.accepts(5.0));
    assert!(!c.accepts(1.9) && !c.accepts(5.1));
    assert!(ArtCondition {
        equal: Some(1.0),
        ..Default::default()
    }
    .accepts(1.0));
    assert!(!ArtCondition {
        equal: Some(1.0),
        ..Default::default()
    }
    .accepts(2.0));
    assert!(ArtCondition::default().accepts(-1e9));
}

#[test]
fn batch_shapes() {
    let one = dict! { "name" => "one", "taskSpecifications" => dict! { "0" => dict! { "command" => "a" } } };
    let two = dict! { "name" => "two", "taskSpecifications" => dict! { "0" => dict! { "command" => "b" } } };

    let array_of_jobs = Value::Array(vec![Value::from(one.clone()), Value::from(two.clone())]);
    assert_eq!(
        parse_batch(&array_of_jobs),
        Ok(vec![one.clone(), two.clone()])
    );

    let wrapped = Value::from(dict! { "jobSpecification" => one.clone() });
    assert_eq!(parse_batch(&wrapped), Ok(vec![one.clone()]));

    assert_eq!(
        parse_batch(&Value::from(two.clone())),
        Ok(vec![two.clone()])
    );

    let mixed = Value::Array(vec![
        Value::from(dict! { "jobSpecification" => one.clone() }),
        Value::from(two.clone()),
    ]);
    assert_eq!(parse_batch(&mixed), Ok(vec![one, two]));

    assert_eq!(
        parse_batch(&Value::Array(vec![])),
        Err(JobSpecError::EmptyBatch)
    );
    let err = parse_batch(&Value::Array(vec![Value::from("oops")])).expect_err("not a job");
    assert_eq!(
        err.to_string(),
        "the batch file, item 0: expected a job specification dictionary or an array, found a string"
    );
}
