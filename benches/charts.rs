//! Draws the charts of `benches/README.md` from the data the benchmarks wrote
//! to `benches/data/` (CSV), as SVG files next to it.
//!
//! - `emfile_cpu.csv` (`cargo bench --bench emfile`) → `emfile_cpu.svg`: the
//!   server's CPU over time while `accept()` fails with `EMFILE`.
//! - `accept.csv` (`cargo bench --bench accept`) → `accept.svg`: connections
//!   per second and server CPU per connection of each accept loop.
//! - `callgrind.csv` (`bash benches/callgrind.sh`) → `instructions.svg`:
//!   instructions per connection of a running server, by connections per
//!   event-loop turn.
//!
//! - `http_recovery.csv` (`cargo bench --features axum --bench http`) →
//!   `http_recovery.svg`: how long after descriptors are freed a new client
//!   is answered, through `axum_listener` and with `axum::serve` alone.
//!
//! A missing data file skips its chart. `bash benches/charts.sh` runs the
//! three benchmarks and then this.
//!
//! Run: `cargo bench --bench charts`

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const SIZE: (u32, u32) = (720, 360);
const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

fn main() -> Result<()> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data");
    for (csv, chart) in [
        (
            "emfile_cpu.csv",
            emfile_cpu as fn(&[Vec<String>], &Path) -> Result<()>,
        ),
        ("accept.csv", accept),
        ("callgrind.csv", instructions),
        ("http_recovery.csv", http_recovery),
    ] {
        let input = data.join(csv);
        let Ok(text) = std::fs::read_to_string(&input) else {
            println!("{} missing: chart skipped", input.display());
            continue;
        };
        let rows: Vec<Vec<String>> = text
            .lines()
            .skip(1) // the header
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.split(',').map(str::to_string).collect())
            .collect();
        let output = svg_path(&input);
        chart(&rows, &output)?;
        println!("wrote {}", output.display());
    }
    Ok(())
}

fn svg_path(csv: &Path) -> PathBuf {
    let name = match csv.file_name().and_then(|n| n.to_str()) {
        Some("callgrind.csv") => "instructions.svg".to_string(),
        Some(other) => other.replace(".csv", ".svg"),
        None => "chart.svg".to_string(),
    };
    csv.with_file_name(name)
}

fn number(text: &str) -> Result<f64> {
    Ok(text.trim().parse()?)
}

/// `variant,ms,cpu_percent`: one line per variant.
fn emfile_cpu(rows: &[Vec<String>], output: &Path) -> Result<()> {
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows {
        series
            .entry(&row[0])
            .or_default()
            .push((number(&row[1])? / 1000.0, number(&row[2])?));
    }
    let end = series.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let root = SVGBackend::new(output, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Server CPU while accept() fails with EMFILE", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        // Below 0, so that a line at 0% shows above the axis.
        .build_cartesian_2d(0.0..end, -4.0..140.0)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(8)
        .y_label_formatter(&|v| {
            if *v < 0.0 {
                String::new()
            } else {
                format!("{:.0}", v)
            }
        })
        .label_style((FONT, 13))
        .x_desc("seconds into the exhaustion")
        .y_desc("% of a core")
        .draw()?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let label = match name {
            "naive" => "naive loop (skips every error)".to_string(),
            "tk_listen" => "sleep_on_error(100 ms)".to_string(),
            other => other.to_string(),
        };
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(3)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `server,run,recovery_ms`: one dot per run and server, with the 100 ms
/// pauses of `sleep_on_error` and axum's 1 s sleep marked.
fn http_recovery(rows: &[Vec<String>], output: &Path) -> Result<()> {
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows {
        series
            .entry(&row[0])
            .or_default()
            .push((number(&row[1])?, number(&row[2])?));
    }
    let runs = series.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let top = series
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(1000.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(output, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "EMFILE: descriptors freed → a new client answered",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..runs + 0.5, 0.0..top)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(runs as usize)
        .x_label_formatter(&|v| format!("{:.0}", v))
        .y_label_formatter(&|v| format!("{:.0}", v))
        .label_style((FONT, 13))
        .x_desc("run (200 clients, RLIMIT_NOFILE 64)")
        .y_desc("ms")
        .draw()?;
    for (ms, text) in [(300.0, "three 100 ms pauses"), (1000.0, "axum's 1 s sleep")] {
        chart.draw_series(LineSeries::new(
            [(0.5, ms), (runs + 0.5, ms)],
            BLACK.mix(0.3).stroke_width(1),
        ))?;
        chart.draw_series([Text::new(text, (0.6, ms + top / 60.0), (FONT, 12))])?;
    }
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let label = match name {
            "axum_tk" => "axum_listener + sleep_on_error(100 ms)".to_string(),
            "axum_plain" => "axum::serve(TcpListener)".to_string(),
            other => other.to_string(),
        };
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 5, color.filled())),
            )?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `variant,conn_per_s,cpu_s_per_1000`: bars of connections per second, the
/// CPU per 1000 connections written on each.
fn accept(rows: &[Vec<String>], output: &Path) -> Result<()> {
    let bars: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|row| Ok((row[0].clone(), number(&row[1])?, number(&row[2])?)))
        .collect::<Result<_>>()?;
    let top = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.2;
    let root = SVGBackend::new(output, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Accept loops: connections per second (median of rounds)",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..bars.len() as f64, 0.0..top)?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&|x| category(&names, *x))
        .y_label_formatter(&|v| format!("{:.0}", v))
        .label_style((FONT, 13))
        .y_desc("connections / s")
        .draw()?;
    for (i, (_, rate, cpu)) in bars.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let x = i as f64;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.2, 0.0), (x + 0.8, *rate)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            // CPU-seconds per 1000 connections = milliseconds per connection.
            format!("{:.0}/s, {:.0} µs CPU each", rate, cpu * 1000.0),
            (x + 0.2, rate + top * 0.08),
            (FONT, 14),
        )))?;
    }
    root.present()?;
    Ok(())
}

/// `variant,batch,instructions`: groups of bars by batch size.
fn instructions(rows: &[Vec<String>], output: &Path) -> Result<()> {
    let mut variants: Vec<String> = Vec::new();
    let mut batches: Vec<String> = Vec::new();
    let mut values = BTreeMap::new();
    for row in rows {
        if !variants.contains(&row[0]) {
            variants.push(row[0].clone());
        }
        if !batches.contains(&row[1]) {
            batches.push(row[1].clone());
        }
        values.insert((row[0].clone(), row[1].clone()), number(&row[2])?);
    }
    let top = values.values().copied().fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(output, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Instructions per connection, one running server (callgrind)",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..batches.len() as f64, 0.0..top)?;
    let labels: Vec<String> = batches
        .iter()
        .map(|b| match b.as_str() {
            "1" => "1 connection per turn".to_string(),
            _ => format!("{b} connections per turn"),
        })
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(batches.len() * 2 + 1)
        .x_label_formatter(&|x| category(&labels, *x))
        .y_label_formatter(&|v| format!("{:.0}", v))
        .label_style((FONT, 13))
        .y_desc("instructions / connection")
        .draw()?;
    let width = 0.8 / variants.len() as f64;
    for (v, variant) in variants.iter().enumerate() {
        let color = COLORS[v % COLORS.len()];
        let bars: Vec<_> = batches
            .iter()
            .enumerate()
            .filter_map(|(b, batch)| {
                let value = *values.get(&(variant.clone(), batch.clone()))?;
                let x = b as f64 + 0.1 + v as f64 * width;
                Some(Rectangle::new(
                    [(x, 0.0), (x + width * 0.9, value)],
                    color.filled(),
                ))
            })
            .collect();
        let values: Vec<_> = batches
            .iter()
            .enumerate()
            .filter_map(|(b, batch)| {
                let value = *values.get(&(variant.clone(), batch.clone()))?;
                let x = b as f64 + 0.1 + v as f64 * width;
                Some(Text::new(
                    format!("{value:.0}"),
                    (x + width * 0.1, value + top * 0.05),
                    (FONT, 13),
                ))
            })
            .collect();
        chart.draw_series(values)?;
        chart
            .draw_series(bars)?
            .label(variant.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The label of the category whose middle is at `x`, for bar charts with one
/// category per unit of the x axis.
fn category(names: &[String], x: f64) -> String {
    let middle = x - 0.5;
    if middle < 0.0 || (middle - middle.round()).abs() > 1e-6 {
        return String::new();
    }
    names
        .get(middle.round() as usize)
        .cloned()
        .unwrap_or_default()
}
