use super::*;

fn validate_text(text: &str) -> Result<Config, ValidationErrors> {
    let file = parse(text, "test.toml").expect("test config should parse");
    file.validate()
}

fn error_lines(text: &str) -> Vec<String> {
    match validate_text(text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(report) => report.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn default_config_is_valid() {
    let file = parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).expect("default config should parse");
    let config = file.validate().expect("default config should validate");
    let names: Vec<_> = config.sinks.iter().map(|sink| sink.name.as_str()).collect();
    assert_eq!(names, ["storage-audit", "errors"], "default sink names");
    assert_eq!(
        config.sinks[0].destination, "audit-storage",
        "storage-audit destination"
    );
    assert_eq!(
        config.sinks[1].destination, "audit-errors",
        "errors destination"
    );
    assert!(
        config.catch_all_topic.is_none(),
        "default has no catch-all topic"
    );
    assert!(config.warnings.is_empty(), "default has no warnings");
}

#[test]
fn defaults_fill_optional_keys() {
    let config = validate_text(
        r#"
        [[sinks]]
        name = "all"
        destination = "everything"
        [[sinks.exclusions]]
        name = "debug"
        filter = "severity=DEBUG"
        "#,
    )
    .expect("config should validate");
    let sink = &config.sinks[0];
    assert!(!sink.disabled, "sink disabled defaults to false");
    assert_eq!(sink.filter.as_str(), "", "sink filter defaults to empty");
    assert!(
        !sink.exclusions[0].disabled,
        "exclusion disabled defaults to false"
    );
}

#[test]
fn every_error_reported_at_once() {
    let errors = error_lines(
        r#"
        catch_all_topic = " "
        [[sinks]]
        name = "bad-filter"
        filter = 'resource.type='
        destination = "t"
        [[sinks]]
        name = "bad-filter"
        destination = ""
        [[sinks.exclusions]]
        name = "noisy"
        filter = 'severity>=LOUD'
        [[sinks.exclusions]]
        name = "noisy"
        filter = '-- only a comment'
        [[sinks]]
        name = "has space"
        destination = "t"
        [[sinks]]
        destination = "t"
        [[sinks.exclusions]]
        filter = "severity=DEBUG"
        "#,
    );
    let expected_starts = [
        "catch_all_topic: topic name is empty",
        "sink \"bad-filter\": invalid filter at line 1, column 15",
        "sink \"bad-filter\": duplicate name: sink #1 has the same name",
        "sink \"bad-filter\": destination is missing",
        "sink \"bad-filter\": exclusion \"noisy\": invalid filter at line 1, column 11",
        "sink \"bad-filter\": exclusion \"noisy\": duplicate name: exclusion #1",
        "sink \"bad-filter\": exclusion \"noisy\": filter is empty",
        "sink \"has space\": invalid name \"has space\"",
        "sink #4: name is missing",
        "sink #4: exclusion #1: name is missing",
    ];
    for start in expected_starts {
        assert!(
            errors.iter().any(|error| error.starts_with(start)),
            "expected an error starting with {start:?} in {errors:#?}"
        );
    }
    assert_eq!(
        errors.len(),
        expected_starts.len(),
        "no other errors: {errors:#?}"
    );
}

#[test]
fn filter_error_has_caret_line() {
    let errors = error_lines(
        r#"
        [[sinks]]
        name = "s"
        filter = 'resource.type='
        destination = "t"
        "#,
    );
    let lines: Vec<_> = errors[0].lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "message, filter line, caret line: {lines:?}"
    );
    assert_eq!(lines[1], "  resource.type=", "filter line");
    assert_eq!(
        lines[2].trim_end(),
        "                ^",
        "caret under column 15"
    );
}

#[test]
fn long_and_odd_names_rejected() {
    let long = "a".repeat(MAX_NAME_CHARS + 1);
    let text = format!(
        "[[sinks]]\nname = \"{long}\"\ndestination = \"t\"\n\
         [[sinks]]\nname = \"caf\u{e9}\"\ndestination = \"t\"\n\
         [[sinks]]\nname = \"{}\"\ndestination = \"t\"\n",
        "a".repeat(MAX_NAME_CHARS)
    );
    let errors = error_lines(&text);
    assert_eq!(
        errors.len(),
        2,
        "only the long and the accented name fail: {errors:#?}"
    );
    assert!(
        errors[0].contains("invalid name"),
        "101 characters: {}",
        errors[0]
    );
    assert!(
        errors[1].contains("invalid name \"café\""),
        "accented: {}",
        errors[1]
    );
}

#[test]
fn filter_warning_collected() {
    let config = validate_text(
        r#"
        [[sinks]]
        name = "s"
        filter = 'resource.type="a" OR "b"'
        destination = "t"
        "#,
    )
    .expect("a warning does not make the config invalid");
    assert_eq!(
        config.warnings.len(),
        1,
        "one warning: {:?}",
        config.warnings
    );
    let warning = config.warnings[0].to_string();
    assert!(
        warning.starts_with("sink \"s\": filter at line 1, column 22: "),
        "warning names sink and position: {warning}"
    );
}

#[test]
fn unknown_key_reports_position() {
    let err = parse("[[sinks]]\nname = \"s\"\ndestinaton = \"t\"\n", "my.toml")
        .expect_err("misspelled key should be rejected");
    let message = err.to_string();
    assert!(
        message.starts_with("my.toml: "),
        "names the file: {message}"
    );
    assert!(
        message.contains("line 3, column 1"),
        "gives the position: {message}"
    );
    assert!(message.contains("destinaton"), "quotes the key: {message}");
}

#[test]
fn unknown_top_level_table_rejected() {
    let err = parse("[topics]\nname = \"t\"\n", "my.toml")
        .expect_err("tables outside the schema should be rejected");
    assert!(
        err.to_string().contains("topics"),
        "quotes the table: {err}"
    );
}

#[test]
fn disabled_flags_kept() {
    let config = validate_text(
        r#"
        [[sinks]]
        name = "a"
        destination = "t"
        disabled = true
        [[sinks.exclusions]]
        name = "x"
        filter = "severity=DEBUG"
        disabled = true
        [[sinks]]
        name = "b"
        destination = "t"
        "#,
    )
    .expect("config should validate");
    assert!(config.sinks[0].disabled, "sink a is disabled");
    assert!(
        config.sinks[0].exclusions[0].disabled,
        "exclusion x is disabled"
    );
    assert!(!config.sinks[1].disabled, "sink b is enabled");
}

#[test]
fn multi_line_filter_error_on_last_line() {
    let errors = error_lines(
        "[[sinks]]\nname = \"s\"\ndestination = \"t\"\nfilter = '''\nseverity>=ERROR\nAND resource.type=\n'''\n",
    );
    assert!(
        errors[0].starts_with("sink \"s\": invalid filter at line 2, column 19: "),
        "position on the filter's last line: {}",
        errors[0]
    );
    assert!(
        errors[0].contains("\n  AND resource.type=\n"),
        "quotes line 2: {}",
        errors[0]
    );
}
