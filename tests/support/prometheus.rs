//! Checks a metrics page with a real parser: Python's `prometheus_client`
//! (`.ci/run` installs it with pip).

use std::io::Write;
use std::process::{Command, Stdio};

/// Parses the page and checks what the format asks beyond the syntax: every
/// family has a `# HELP` and a `# TYPE` (counter, gauge or histogram), a
/// counter's sample ends in `_total`, a histogram's buckets rise to `+Inf`,
/// which equals its `_count`.
const CHECK: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    assert family.documentation, "no HELP for " + family.name
    assert family.type in ("counter", "gauge", "histogram"), family.name + " is " + family.type
    if family.type == "counter":
        assert all(s.name == family.name + "_total" for s in family.samples), family.samples
    if family.type == "histogram":
        buckets = [s for s in family.samples if s.name.endswith("_bucket")]
        bounds = [float(s.labels["le"]) for s in buckets]
        counts = [s.value for s in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf"), bounds
        assert counts == sorted(counts), counts
        count = [s.value for s in family.samples if s.name.endswith("_count")]
        assert count == [counts[-1]], (count, counts)
    for s in family.samples:
        labels = "".join('{%s="%s"}' % item for item in sorted(s.labels.items()))
        print("%s %s%s %r" % (family.type, s.name, labels, s.value))
"#;

/// The page's samples as the parser read them, one line each:
/// `TYPE NAME{LABELS} VALUE`, the value as Python prints it.
///
/// # Panics
///
/// If python3 or `prometheus_client` is missing, or the page does not parse
/// or fails a check: the test fails, it is not skipped.
pub fn parse(page: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "cannot run python3; install it and `pip install prometheus-client` (.ci/run does)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = child.wait_with_output().expect("python3 did not finish");
    assert!(
        output.status.success(),
        "prometheus_client rejected the page ({}):\n{}\nthe page:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        page
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The value of the sample `name` (with its labels, if any), or `None`.
pub fn value(samples: &[String], name: &str) -> Option<f64> {
    samples.iter().find_map(|line| {
        let mut parts = line.split(' ');
        let (_type, sample, value) = (parts.next()?, parts.next()?, parts.next()?);
        (sample == name).then(|| value.parse().expect("a float"))
    })
}

/// The type of the family whose sample is `name`, or `None`.
pub fn type_of(samples: &[String], name: &str) -> Option<String> {
    samples.iter().find_map(|line| {
        let mut parts = line.split(' ');
        let (kind, sample) = (parts.next()?, parts.next()?);
        (sample == name).then(|| kind.to_string())
    })
}
