//! The command lines of the examples that operators drive from outside: a
//! bad one prints the usage line and exits 2, instead of serving with a
//! setting it didn't ask for.

mod support;

use std::process::Command;

use support::process::{built_example, run_to_exit};
use support::GENEROUS;

/// Bad command lines of the HTTP examples (`NAME [ADDR] [--metrics ADDR]
/// [--per-peer N]`).
const BAD_HTTP_ARGS: [&[&str]; 9] = [
    &["--bogus"],
    &["--metrics"],
    &["not-an-address"],
    &["--metrics", "nonsense"],
    &["127.0.0.1:0", "127.0.0.1:0"],
    &[
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ],
    &["--per-peer"],
    &["--per-peer", "0"],
    &["--per-peer", "8", "--per-peer", "9"],
];

fn assert_refused(example: &str, args: &[&str]) {
    let (status, _, stderr) = run_to_exit(
        Command::new(built_example(example))
            .args(args)
            .env("RUST_LOG", "off"),
        GENEROUS,
    );
    assert_eq!(status.code(), Some(2), "{} {:?}: {}", example, args, stderr);
    assert!(
        stderr.contains(&format!("usage: {} [ADDR", example)),
        "{} {:?}: {}",
        example,
        args,
        stderr
    );
}

#[test]
fn a_bad_argument_of_an_http_example_prints_the_usage_line_and_exits_2() {
    for example in ["http", "hyper", "axum"] {
        for args in BAD_HTTP_ARGS {
            assert_refused(example, args);
        }
    }
}

#[test]
fn a_bad_argument_of_the_tokio1_example_prints_the_usage_line_and_exits_2() {
    for args in [
        &["not-an-address"][..],
        &["127.0.0.1:0", "127.0.0.1:0"],
        &["127.0.0.1:0", "--bogus"],
    ] {
        assert_refused("tokio1", args);
    }
}

#[test]
fn help_prints_the_usage_line_and_exits_0() {
    for example in ["http", "hyper", "axum"] {
        // With an address of port 0: if `--help` were taken for a bad
        // argument or ignored, the test still ends (exit 2, or killed).
        let (status, stdout, stderr) = run_to_exit(
            Command::new(built_example(example))
                .args(["--help", "127.0.0.1:0"])
                .env("RUST_LOG", "off"),
            GENEROUS,
        );
        assert_eq!(status.code(), Some(0), "{}: {}{}", example, stdout, stderr);
        assert!(
            stdout.contains(&format!("usage: {} [ADDR]", example)),
            "{}: {}",
            example,
            stdout
        );
    }
}
