//! Table tests: predicates evaluated against a job's attributes with hand-worked results,
//! the parsed shape of precedence, canonical display, and error messages.

use xgrid_protocol::plist::{Date, Dictionary, Value};

use super::*;

fn text(s: &str) -> Value {
    Value::String(s.to_string())
}

fn dictionary<const N: usize>(entries: [(&str, Value); N]) -> Dictionary {
    entries
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

/// Attributes as a controller would hold them for a running job, with numbers and
/// booleans as strings where Xgrid sends strings, plus a few typed values.
fn job() -> Dictionary {
    dictionary([
        ("name", text("Render Frames")),
        ("applicationIdentifier", text("com.apple.xgrid.cli")),
        ("jobStatus", text("Running")),
        ("taskCount", text("12")),
        ("undoneTaskCount", text("3")),
        ("activeCPUPower", text(" 2400 ")),
        ("percentDone", Value::Real(75.0)),
        ("suspended", text("YES")),
        ("isDefault", Value::Boolean(true)),
        ("maximumTaskCount", Value::Integer(4)),
        ("owner", text("Zoë Müller")),
        ("builder", text("Søren")),
        ("decomposed", text("Zoe\u{308}")),
        ("pattern", text("a*b")),
        ("tags", Value::Array(vec![text("gpu"), text("Linux")])),
        (
            "dateSubmitted",
            Value::Date(Date::from_unix_seconds(1_700_000_000)),
        ),
        (
            "schedulerParameters",
            Value::Dictionary(dictionary([
                ("tasksMustStartSimultaneously", text("NO")),
                ("minimumTaskCount", text("2")),
                (
                    "nested",
                    Value::Dictionary(dictionary([("depth", text("3"))])),
                ),
            ])),
        ),
    ])
}

/// Parses each predicate and checks whether the job matches it.
fn check(cases: &[(&str, bool)]) {
    let job = job();
    for &(source, expected) in cases {
        let predicate = Predicate::parse(source)
            .unwrap_or_else(|error| panic!("{source:?} did not parse: {error}"));
        assert_eq!(predicate.matches(&job), expected, "{source}");
    }
}

#[test]
fn equality() {
    check(&[
        (r#"name == "Render Frames""#, true),
        (r#"name = "Render Frames""#, true),
        (r#"name == "Render""#, false),
        (r#"name == "render frames""#, false),
        (r#"name != "Render""#, true),
        (r#"name != "Render Frames""#, false),
        (r#"name <> "Render Frames""#, false),
        (r#"name <> "x""#, true),
        ("applicationIdentifier == 'com.apple.xgrid.cli'", true),
        (r#""Running" == jobStatus"#, true),
        ("jobStatus == applicationIdentifier", false),
        ("jobStatus == jobStatus", true),
    ]);
}

#[test]
fn ordering() {
    check(&[
        (r#"jobStatus < "S""#, true),
        (r#"jobStatus > "S""#, false),
        (r#"jobStatus <= "Running""#, true),
        (r#"jobStatus >= "Running""#, true),
        (r#"jobStatus >= "Runninh""#, false),
        ("undoneTaskCount < 4", true),
        ("undoneTaskCount <= 3", true),
        ("undoneTaskCount =< 2", false),
        ("undoneTaskCount > 3", false),
        ("undoneTaskCount >= 3", true),
        ("undoneTaskCount => 4", false),
    ]);
}

#[test]
fn numbers_sent_as_strings_compare_as_numbers() {
    check(&[
        // As strings "12" < "5"; as numbers 12 > 5.
        ("taskCount > 5", true),
        ("taskCount < 5", false),
        ("taskCount >= 12", true),
        ("taskCount == 12", true),
        ("taskCount == 12.0", true),
        ("taskCount != 12", false),
        ("taskCount <= 11.5", false),
        ("taskCount > -1", true),
        ("taskCount < -1e3", false),
        ("activeCPUPower == 2400", true),
        ("maximumTaskCount == \"4\"", true),
        ("maximumTaskCount < \"10\"", true),
        ("percentDone == 75", true),
        ("percentDone > 74.5", true),
        ("percentDone < \"80\"", true),
        ("taskCount IN {11, 12}", true),
        ("taskCount IN {11, 13}", false),
        // Two strings stay strings, as in NSPredicate.
        ("taskCount > \"5\"", false),
        ("taskCount < \"5\"", true),
        ("taskCount == \"12.0\"", false),
        // A string that is no number neither equals nor orders against one.
        ("name == 5", false),
        ("name != 5", true),
        ("name < 5", false),
        ("name > 5", false),
    ]);
}

#[test]
fn booleans() {
    check(&[
        ("suspended == YES", true),
        ("suspended == TRUE", true),
        ("suspended == yes", true),
        ("suspended == NO", false),
        ("suspended != NO", true),
        ("isDefault == YES", true),
        ("isDefault == \"YES\"", true),
        ("isDefault == \"no\"", false),
        ("isDefault == 1", true),
        ("isDefault == 0", false),
        ("isDefault > NO", true),
        ("isDefault < NO", false),
        (
            "schedulerParameters.tasksMustStartSimultaneously == NO",
            true,
        ),
        (
            "schedulerParameters.tasksMustStartSimultaneously == FALSE",
            true,
        ),
        ("name == YES", false),
        ("name != YES", true),
    ]);
}

#[test]
fn missing_keys_are_nil() {
    check(&[
        ("missing == nil", true),
        ("missing == NULL", true),
        ("missing != nil", false),
        ("name != nil", true),
        ("name == nil", false),
        ("nil == missing", true),
        ("missing == \"x\"", false),
        ("missing != \"x\"", true),
        ("missing == missingToo", true),
        ("missing < 5", false),
        ("missing > 5", false),
        ("missing <= 5", false),
        ("missing >= nil", false),
        ("missing BEGINSWITH \"\"", false),
        ("missing ENDSWITH \"\"", false),
        ("missing CONTAINS \"\"", false),
        ("missing LIKE \"*\"", false),
        ("missing IN {\"a\", 1}", false),
        ("\"a\" IN missing", false),
        // IN compares with ==, under which nil equals nil.
        ("missing IN {1, nil}", true),
        // A key path through something that is not a dictionary leads nowhere.
        ("name.length == nil", true),
        ("schedulerParameters.nope == nil", true),
        ("schedulerParameters.nested.nope.deeper == nil", true),
    ]);
}

#[test]
fn key_paths_reach_into_nested_dictionaries() {
    check(&[
        ("schedulerParameters.minimumTaskCount == 2", true),
        ("schedulerParameters.minimumTaskCount == 3", false),
        ("schedulerParameters.nested.depth >= 3", true),
        ("schedulerParameters.nested.depth > 3", false),
        ("schedulerParameters == nil", false),
        // Keys are case-sensitive; keywords are not.
        ("Name == \"Render Frames\"", false),
    ]);
}

#[test]
fn string_operators() {
    check(&[
        (r#"name BEGINSWITH "Render""#, true),
        (r#"name BEGINSWITH "render""#, false),
        (r#"name BEGINSWITH "Frames""#, false),
        (r#"name ENDSWITH "Frames""#, true),
        (r#"name ENDSWITH "Render""#, false),
        (r#"name CONTAINS "der Fr""#, true),
        (r#"name CONTAINS "xyz""#, false),
        (r#"name CONTAINS """#, true),
        (r#""der" IN name"#, true),
        (r#""Der" IN name"#, false),
        // String operators need strings on both sides.
        ("taskCount BEGINSWITH 1", false),
        ("percentDone CONTAINS \"7\"", false),
    ]);
}

#[test]
fn like_wildcards() {
    check(&[
        (r#"name LIKE "Render*""#, true),
        (r#"name LIKE "*Frames""#, true),
        (r#"name LIKE "*der*""#, true),
        (r#"name LIKE "R?nder Frames""#, true),
        (r#"name LIKE "R*e*s""#, true),
        (r#"name LIKE "R*x*s""#, false),
        (r#"name LIKE "*""#, true),
        (r#"name LIKE "Render""#, false),
        (r#"name LIKE "render*""#, false),
        (r#"name LIKE "?????????????""#, true),
        (r#"name LIKE "????????????""#, false),
        (r#"name LIKE "??????????????""#, false),
        (r#"name LIKE "Render Frames?""#, false),
        (r#"name LIKE "**Frames**""#, true),
        // `\\` in the string literal leaves `\*` in the pattern: a literal star.
        (r#"pattern LIKE "a\\*b""#, true),
        (r#"pattern LIKE "a\\*""#, false),
        (r#"name LIKE "Render\\*""#, false),
    ]);
}

#[test]
fn case_and_diacritic_options() {
    check(&[
        (r#"name ==[c] "render frames""#, true),
        (r#"name !=[c] "RENDER FRAMES""#, false),
        (r#"name BEGINSWITH[c] "render""#, true),
        (r#"name ENDSWITH[c] "FRAMES""#, true),
        (r#"name CONTAINS[c] "DER fr""#, true),
        (r#"name LIKE[c] "render*""#, true),
        (r#"jobStatus IN[c] {"running", "pending"}"#, true),
        (r#"jobStatus >[c] "q""#, true),
        (r#"jobStatus > "q""#, false),
        (r#"owner == "Zoe Muller""#, false),
        (r#"owner ==[d] "Zoe Muller""#, true),
        (r#"owner ==[d] "zoe muller""#, false),
        (r#"owner ==[c] "zoe muller""#, false),
        (r#"owner ==[c] "ZOË MÜLLER""#, true),
        (r#"owner ==[cd] "ZOE MULLER""#, true),
        (r#"owner ==[CD] "ZOE MULLER""#, true),
        (r#"owner ==[dc] "ZOE MULLER""#, true),
        (r#"owner ==[d] "Zoë Müller""#, true),
        (r#"owner BEGINSWITH[d] "Zoe""#, true),
        (r#"owner CONTAINS[cd] "MULL""#, true),
        (r#"owner LIKE[cd] "zoe m?ller""#, true),
        // Letters that do not decompose keep their identity.
        (r#"builder ==[d] "Soren""#, false),
        (r#"builder ==[c] "SØREN""#, true),
        // Combining accents (a decomposed "Zoë") are dropped too.
        (r#"decomposed ==[d] "Zoe""#, true),
        (r#"decomposed == "Zoe""#, false),
        (r#"decomposed ==[cd] "ZOË""#, true),
    ]);
}

#[test]
fn collections() {
    check(&[
        (r#"jobStatus IN {"Running", "Pending"}"#, true),
        (r#"jobStatus IN {"Finished"}"#, false),
        ("jobStatus IN {}", false),
        (r#"tags CONTAINS "gpu""#, true),
        (r#"tags CONTAINS "GPU""#, false),
        (r#"tags CONTAINS[c] "linux""#, true),
        (r#""gpu" IN tags"#, true),
        (r#""cpu" IN tags"#, false),
        ("{1, 2} CONTAINS 2", true),
        ("{1, 2} CONTAINS 3", false),
        (r#"tags == {"gpu", "Linux"}"#, true),
        (r#"tags == {"gpu"}"#, false),
        (r#"tags ==[c] {"GPU", "linux"}"#, true),
        (r#"{taskCount, undoneTaskCount} CONTAINS "3""#, true),
    ]);
}

#[test]
fn dates() {
    check(&[
        (r#"dateSubmitted > "2023-01-01T00:00:00Z""#, true),
        (r#"dateSubmitted < "2023-01-01T00:00:00Z""#, false),
        (r#"dateSubmitted == "2023-11-14T22:13:20Z""#, true),
        (r#"dateSubmitted <= "2023-11-14T22:13:19Z""#, false),
        (r#"dateSubmitted == "yesterday""#, false),
        ("dateSubmitted > 5", false),
    ]);
}

#[test]
fn constants_and_keywords_in_any_case() {
    check(&[
        ("TRUEPREDICATE", true),
        ("truepredicate", true),
        ("FALSEPREDICATE", false),
        ("FalsePredicate", false),
        ("TRUE", true),
        ("YES", true),
        ("yes", true),
        ("FALSE", false),
        ("NO", false),
        ("no", false),
        ("(FALSE)", false),
        (r#"FALSE OR name == "Render Frames""#, true),
        (
            r#"name beginswith "R" and not (jobStatus == "Failed")"#,
            true,
        ),
        (r#"name Contains[C] "FRAMES" oR FALSE"#, true),
        (r#"jobStatus in {"Running"}"#, true),
        (r#"name like "R*""#, true),
        (r#"name endsWith "s""#, true),
    ]);
}

#[test]
fn logic_and_precedence() {
    check(&[
        (r#"NOT name == "x""#, true),
        (r#"! (name == "x")"#, true),
        (r#"!(name == "Render Frames")"#, false),
        ("!TRUE", false),
        ("!!TRUE", true),
        ("NOT NOT TRUE", true),
        ("TRUE AND TRUE", true),
        ("TRUE AND FALSE", false),
        ("FALSE OR FALSE", false),
        ("FALSE OR TRUE", true),
        // AND binds tighter than OR: (F AND F) OR T, not F AND (F OR T).
        ("FALSE AND FALSE OR TRUE", true),
        // T OR (T AND F), not (T OR T) AND F.
        ("TRUE OR TRUE AND FALSE", true),
        ("(TRUE OR TRUE) AND FALSE", false),
        // NOT binds tighter than AND and OR: (NOT T) AND F, (NOT F) OR T.
        ("NOT TRUE AND FALSE", false),
        ("NOT (TRUE AND FALSE)", true),
        ("NOT FALSE OR TRUE", true),
        ("NOT (FALSE OR TRUE)", false),
        ("TRUE && FALSE || TRUE", true),
        ("TRUE && (FALSE || FALSE)", false),
        (
            r#"taskCount > 10 AND jobStatus == "Running" AND NOT suspended == NO"#,
            true,
        ),
        (
            r#"jobStatus == "Failed" OR jobStatus == "Finished" OR taskCount < 2"#,
            false,
        ),
    ]);
}

fn comparison(key: &str, number: i64) -> Predicate {
    Predicate::Comparison(Comparison {
        left: Expression::KeyPath(vec![key.to_string()]),
        operator: Operator::Equal,
        options: StringOptions::default(),
        right: Expression::Integer(number),
    })
}

#[test]
fn parsed_shape_follows_precedence() {
    let (a, b, c) = (comparison("a", 1), comparison("b", 2), comparison("c", 3));
    let cases = [
        (
            "a == 1 OR b == 2 AND c == 3",
            Predicate::Or(vec![a.clone(), Predicate::And(vec![b.clone(), c.clone()])]),
        ),
        (
            "a == 1 AND b == 2 OR c == 3",
            Predicate::Or(vec![Predicate::And(vec![a.clone(), b.clone()]), c.clone()]),
        ),
        (
            "NOT a == 1 AND b == 2",
            Predicate::And(vec![Predicate::Not(Box::new(a.clone())), b.clone()]),
        ),
        (
            "a == 1 AND b == 2 AND c == 3",
            Predicate::And(vec![a.clone(), b.clone(), c.clone()]),
        ),
        (
            "a == 1 AND (b == 2 AND c == 3)",
            Predicate::And(vec![a.clone(), Predicate::And(vec![b.clone(), c.clone()])]),
        ),
        ("((a == 1))", a.clone()),
    ];
    for (source, expected) in cases {
        assert_eq!(Predicate::parse(source), Ok(expected), "{source}");
    }
}

#[test]
fn parses_literals() {
    let right = |source: &str| match Predicate::parse(source) {
        Ok(Predicate::Comparison(comparison)) => comparison.right,
        other => panic!("{source:?} gave {other:?}"),
    };
    assert_eq!(right("a == -7"), Expression::Integer(-7));
    assert_eq!(right("a==-7"), Expression::Integer(-7));
    assert_eq!(right("a == 1.5"), Expression::Real(1.5));
    assert_eq!(right("a == -2.5e2"), Expression::Real(-250.0));
    assert_eq!(right("a == 3E-1"), Expression::Real(0.3));
    assert_eq!(
        right("a == -9223372036854775808"),
        Expression::Integer(i64::MIN)
    );
    assert_eq!(right("a == 99999999999999999999"), Expression::Real(1e20));
    assert_eq!(
        right(r#"a == "q\" s\' b\\ n\n r\r t\t u\u00e9""#),
        Expression::String("q\" s' b\\ n\n r\r t\t ué".to_string())
    );
    assert_eq!(
        right(r#"a == 'single "quotes" \'ok\''"#),
        Expression::String("single \"quotes\" 'ok'".to_string())
    );
    assert_eq!(right("a == TRUE"), Expression::Boolean(true));
    assert_eq!(right("a == no"), Expression::Boolean(false));
    assert_eq!(right("a == Null"), Expression::Nil);
    assert_eq!(
        right("a == b.#in.c_2"),
        Expression::KeyPath(vec!["b".into(), "in".into(), "c_2".into()])
    );
    assert_eq!(
        right("a IN {1, 'x', {}, b}"),
        Expression::Aggregate(vec![
            Expression::Integer(1),
            Expression::String("x".into()),
            Expression::Aggregate(vec![]),
            Expression::KeyPath(vec!["b".into()]),
        ])
    );
}

#[test]
fn escaped_keyword_is_a_key() {
    let attributes = dictionary([("in", text("x")), ("YES", text("y"))]);
    let predicate = Predicate::parse(r#"#in == "x" AND #YES == "y""#);
    assert_eq!(predicate.map(|p| p.matches(&attributes)), Ok(true));
}

#[test]
fn always_matches_everything() {
    assert_eq!(Predicate::always(), Predicate::Constant(true));
    assert!(Predicate::always().matches(&Dictionary::new()));
    assert!(Predicate::always().matches(&job()));
    assert_eq!(Predicate::always().to_string(), "TRUEPREDICATE");
    assert_eq!(
        "TRUEPREDICATE".parse::<Predicate>(),
        Ok(Predicate::always())
    );
}

#[test]
fn displays_canonical_syntax() {
    let cases = [
        (r#"name = "x""#, r#"name == "x""#),
        ("a <> 1", "a != 1"),
        ("a =< 1", "a <= 1"),
        ("a => 1", "a >= 1"),
        ("a<1", "a < 1"),
        ("a>1", "a > 1"),
        (
            "a == 1 && b == 2 || !(c == 3)",
            "a == 1 AND b == 2 OR NOT c == 3",
        ),
        (
            "(a == 1 or b == 2) and c == 3",
            "(a == 1 OR b == 2) AND c == 3",
        ),
        (
            "a == 1 OR (b == 2 OR c == 3)",
            "a == 1 OR (b == 2 OR c == 3)",
        ),
        ("not (a == 1 and b == 2)", "NOT (a == 1 AND b == 2)"),
        ("NOT NOT a == 1", "NOT NOT a == 1"),
        (
            "name beginswith[CD] 'x' OR name endswith[c] 'y' OR name contains[d] 'z'",
            r#"name BEGINSWITH[cd] "x" OR name ENDSWITH[c] "y" OR name CONTAINS[d] "z""#,
        ),
        (r#"s like "a*""#, r#"s LIKE "a*""#),
        (
            r#"s == 'say "hi"\\ \n\t\r'"#,
            r#"s == "say \"hi\"\\ \n\t\r""#,
        ),
        (r#"s == "\u0001é""#, r#"s == "\u0001é""#),
        ("r == 1.5e3", "r == 1500.0"),
        ("r == 2.0", "r == 2.0"),
        ("r == -0.25", "r == -0.25"),
        ("r == 99999999999999999999", "r == 1e20"),
        ("i == -7", "i == -7"),
        ("yes", "TRUEPREDICATE"),
        ("No", "FALSEPREDICATE"),
        ("a == true AND b == False", "a == YES AND b == NO"),
        ("a == NULL", "a == nil"),
        ("#in == 1", "#in == 1"),
        ("a.#AND.b == 1", "a.#AND.b == 1"),
        ("x IN { 1 ,2,'a' }", r#"x IN {1, 2, "a"}"#),
        ("x in {}", "x IN {}"),
    ];
    for (source, canonical) in cases {
        let parsed = Predicate::parse(source);
        let shown = parsed.as_ref().map(ToString::to_string);
        assert_eq!(shown.as_deref(), Ok(canonical), "{source}");
        assert_eq!(Predicate::parse(canonical), parsed, "{canonical}");
    }
}

#[test]
fn displays_degenerate_chains_by_meaning() {
    let a = comparison("a", 1);
    assert_eq!(Predicate::And(vec![]).to_string(), "TRUEPREDICATE");
    assert_eq!(Predicate::Or(vec![]).to_string(), "FALSEPREDICATE");
    let not_single_or = Predicate::Not(Box::new(Predicate::And(vec![Predicate::Or(vec![
        a.clone(),
        a,
    ])])));
    assert_eq!(not_single_or.to_string(), "NOT (a == 1 OR a == 1)");
}

fn error(source: &str) -> PredicateError {
    match Predicate::parse(source) {
        Err(error) => error,
        Ok(predicate) => panic!("{source:?} parsed as {predicate:?}"),
    }
}

#[test]
fn errors_say_where_and_what() {
    let cases: &[(&str, PredicateError, &str)] = &[
        (
            "",
            PredicateError::Empty,
            "the predicate is empty: write TRUEPREDICATE to match everything or \
             FALSEPREDICATE to match nothing",
        ),
        ("  \t", PredicateError::Empty, "the predicate is empty"),
        (
            r#"name == "abc"#,
            PredicateError::UnterminatedString {
                column: 9,
                quote: '"',
            },
            "at column 9: the string opened here has no closing \"",
        ),
        (
            "name == 'abc\\'",
            PredicateError::UnterminatedString {
                column: 9,
                quote: '\'',
            },
            "at column 9: the string opened here has no closing '",
        ),
        (
            r#"name == "a\qb""#,
            PredicateError::BadEscape {
                column: 11,
                escape: "\\q".into(),
            },
            "at column 11: unknown escape `\\q` in a string",
        ),
        (
            r#"name == "\u12x4""#,
            PredicateError::BadEscape {
                column: 10,
                escape: "\\u12x4".into(),
            },
            "at column 10: unknown escape `\\u12x4`",
        ),
        (
            r#"name == "\uD800""#,
            PredicateError::BadEscape {
                column: 10,
                escape: "\\uD800".into(),
            },
            "unknown escape `\\uD800`",
        ),
        (
            r#"name ~= "x""#,
            PredicateError::UnknownOperator {
                column: 6,
                found: "`~=`".into(),
            },
            "at column 6: unknown operator `~=`; the operators are ==, !=, <, <=, >, >=, \
             BEGINSWITH, ENDSWITH, CONTAINS, LIKE and IN",
        ),
        (
            r#"name === "x""#,
            PredicateError::UnknownOperator {
                column: 6,
                found: "`===`".into(),
            },
            "at column 6: unknown operator `===`",
        ),
        (
            r#"name EQUALS "x""#,
            PredicateError::UnknownOperator {
                column: 6,
                found: "`EQUALS`".into(),
            },
            "at column 6: unknown operator `EQUALS`",
        ),
        (
            r#"name == "x" extra"#,
            PredicateError::Expected {
                column: 13,
                expected: "AND, OR or the end of the predicate".into(),
                found: "`extra`".into(),
            },
            "at column 13: expected AND, OR or the end of the predicate, found `extra`",
        ),
        (
            r#"name == "x")"#,
            PredicateError::Expected {
                column: 12,
                expected: "AND, OR or the end of the predicate".into(),
                found: "`)`".into(),
            },
            "at column 12: expected AND, OR or the end of the predicate, found `)`",
        ),
        (
            "a == 1 b == 2",
            PredicateError::Expected {
                column: 8,
                expected: "AND, OR or the end of the predicate".into(),
                found: "`b`".into(),
            },
            "found `b`",
        ),
        (
            "TRUE ==",
            PredicateError::Expected {
                column: 8,
                expected: "a key path or value to compare with".into(),
                found: "the end of the predicate".into(),
            },
            "at column 8: expected a key path or value to compare with, found the end of \
             the predicate",
        ),
        (
            r#"(name == "x" OR TRUE"#,
            PredicateError::Expected {
                column: 21,
                expected: "`)` to close the `(` at column 1".into(),
                found: "the end of the predicate".into(),
            },
            "at column 21: expected `)` to close the `(` at column 1, found the end of the \
             predicate",
        ),
        (
            "schedulerParameters.minimumTaskCount",
            PredicateError::Expected {
                column: 37,
                expected: "an operator such as == after `schedulerParameters.minimumTas…`".into(),
                found: "the end of the predicate".into(),
            },
            "at column 37: expected an operator such as == after \
             `schedulerParameters.minimumTas…`, found the end of the predicate",
        ),
        (
            "name AND TRUE",
            PredicateError::Expected {
                column: 6,
                expected: "an operator such as == after `name`".into(),
                found: "`AND`".into(),
            },
            "found `AND`",
        ),
        (
            "== 5",
            PredicateError::Expected {
                column: 1,
                expected: "a comparison, TRUEPREDICATE, FALSEPREDICATE, NOT or `(`".into(),
                found: "`==`".into(),
            },
            "at column 1: expected a comparison, TRUEPREDICATE, FALSEPREDICATE, NOT or `(`, \
             found `==`",
        ),
        (
            "a == 1 AND",
            PredicateError::Expected {
                column: 11,
                expected: "a comparison, TRUEPREDICATE, FALSEPREDICATE, NOT or `(`".into(),
                found: "the end of the predicate".into(),
            },
            "at column 11",
        ),
        (
            r#"name ==[x] "a""#,
            PredicateError::UnknownOption {
                column: 9,
                option: "x".into(),
            },
            "at column 9: unknown option [x]; the options are [c] (ignore case), [d] \
             (ignore accents) and [cd]",
        ),
        (
            r#"name ==[c "a""#,
            PredicateError::Expected {
                column: 11,
                expected: "`]` after the options".into(),
                found: "`\"a\"`".into(),
            },
            "expected `]` after the options",
        ),
        (
            r#"name MATCHES "a.*""#,
            PredicateError::Unsupported {
                column: 6,
                feature: "MATCHES (regular expressions)".into(),
            },
            "at column 6: MATCHES (regular expressions) is not supported here",
        ),
        (
            r#"ANY tags == "x""#,
            PredicateError::Unsupported {
                column: 1,
                feature: "ANY (collection quantifiers)".into(),
            },
            "ANY (collection quantifiers) is not supported here",
        ),
        (
            "name == $who",
            PredicateError::Unsupported {
                column: 9,
                feature: "a $variable".into(),
            },
            "a $variable is not supported here",
        ),
        (
            "name == %@",
            PredicateError::Unsupported {
                column: 9,
                feature: "a % format specifier".into(),
            },
            "a % format specifier is not supported here",
        ),
        (
            "a == 1e999",
            PredicateError::BadNumber {
                column: 6,
                text: "1e999".into(),
            },
            "at column 6: the number 1e999 is too large",
        ),
        (
            "a.in == 1",
            PredicateError::Expected {
                column: 3,
                expected: "a key name after `.` (write #name for a key that is a keyword)".into(),
                found: "`in`".into(),
            },
            "found `in`",
        ),
        (
            "tasks.0.command == 1",
            PredicateError::Expected {
                column: 7,
                expected: "a key name after `.` (write #name for a key that is a keyword)".into(),
                found: "`0`".into(),
            },
            "found `0`",
        ),
        (
            "a IN {1, 2 == 1",
            PredicateError::Expected {
                column: 12,
                expected: "`,` or `}` in the list".into(),
                found: "`==`".into(),
            },
            "expected `,` or `}` in the list",
        ),
        (
            "a IN {1,}",
            PredicateError::Expected {
                column: 9,
                expected: "a value in the `{…}` list".into(),
                found: "`}`".into(),
            },
            "expected a value in the `{…}` list",
        ),
        // Columns count characters, not bytes: "ë" is two bytes.
        (
            "'ë' ~ 1",
            PredicateError::UnknownOperator {
                column: 5,
                found: "`~`".into(),
            },
            "at column 5",
        ),
        (
            r#"name == "a very long string that goes on and on" ?"#,
            PredicateError::Expected {
                column: 50,
                expected: "AND, OR or the end of the predicate".into(),
                found: "`?`".into(),
            },
            "found `?`",
        ),
    ];
    for (source, expected, message) in cases {
        let error = error(source);
        assert_eq!(&error, expected, "{source}");
        assert_eq!(error.column(), expected.column(), "{source}");
        let shown = error.to_string();
        assert!(shown.contains(message), "{source}: {shown}");
    }
}

#[test]
fn nesting_is_bounded() {
    let parens = |depth: usize| format!("{}TRUE{}", "(".repeat(depth), ")".repeat(depth));
    assert_eq!(
        Predicate::parse(&parens(MAX_NESTING)),
        Ok(Predicate::always())
    );
    assert_eq!(
        Predicate::parse(&parens(MAX_NESTING + 1)),
        Err(PredicateError::TooDeep {
            column: MAX_NESTING + 1
        })
    );
    let nots = format!("{}TRUE", "!".repeat(MAX_NESTING + 1));
    assert_eq!(
        Predicate::parse(&nots),
        Err(PredicateError::TooDeep {
            column: MAX_NESTING + 1
        })
    );
    let aggregates = format!("a IN {}{}", "{".repeat(10_000), "}".repeat(10_000));
    assert_eq!(
        Predicate::parse(&aggregates).map_err(|e| e.to_string()),
        Err(format!(
            "at column {}: parentheses, NOTs and {{…}} nest more than {MAX_NESTING} deep",
            6 + MAX_NESTING
        ))
    );
}

#[test]
fn long_chains_do_not_nest() {
    let chain = vec!["a == 1"; 50_000].join(" OR ");
    let predicate = Predicate::parse(&chain);
    assert!(matches!(&predicate, Ok(Predicate::Or(items)) if items.len() == 50_000));
    let attributes = dictionary([("a", text("1"))]);
    assert_eq!(predicate.map(|p| p.matches(&attributes)), Ok(true));
}
