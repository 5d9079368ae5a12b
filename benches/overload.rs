//! A picture of the cap: `examples/http`'s server (the same module) pushed
//! past its limits for 20 s, its metrics page sampled every 100 ms.
//!
//! The server runs here with 100 slots, 8 per peer and a 3 s deadline; the
//! clients run in a child process (this same binary, started with an
//! environment variable), each thread from its own 127.0.x.y address:
//!
//! - 1 s to 19 s: 30 clients in a loop of `GET /`, one request at a time;
//! - 3 s to 17 s: 120 idle clients (15 peers of 8) that send nothing, so
//!   the deadline drops them, and connect again: more than the slots;
//! - 7 s to 9 s: one greedy peer opening 30 connections every 250 ms, over
//!   its cap of 8;
//! - 11 s to 14 s: this process's descriptor limit drops below the
//!   descriptors it has open, so `accept()` fails with `EMFILE` and the
//!   server pauses (100 ms at a time) while clients pile up in the queue.
//!
//! Each sample renders the server's `tk_listen::Metrics` page and reads
//! running connections, clients waiting in the accept queue, per-peer
//! rejections and whether accepting is paused. They go to
//! `benches/data/overload.csv` and are drawn as `benches/data/overload.svg`.
//! Linux only (the queue is read from Linux's `sock_diag`).
//!
//! Run: `cargo bench --bench overload` (about 25 s).

#[path = "../examples/http/server.rs"]
#[allow(dead_code)]
mod server;
mod support;

use std::io::{Read, Write};
use std::net::{self, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use socket2::{Domain, Socket, Type};
use tk_listen::Metrics;
use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

const CLIENTS: &str = "TK_OVERLOAD_CLIENTS";
const SLOTS: usize = 100;
const DEADLINE: Duration = Duration::from_secs(3);
const RUN: Duration = Duration::from_secs(20);
const SAMPLE: Duration = Duration::from_millis(100);
const EXHAUSTED: (f64, f64) = (11.0, 14.0);
/// The server process's descriptor limit: enough for the slots, few enough
/// to take them all quickly.
const NOFILE: u64 = 512;
/// The limit from 11 s to 14 s: below the descriptors the process has open.
const EXHAUSTED_NOFILE: u64 = 16;

fn main() {
    if let Ok(addr) = std::env::var(CLIENTS) {
        return clients(addr.parse().expect("the server's address"));
    }
    support::set_nofile_soft(NOFILE).expect("lower RLIMIT_NOFILE");
    let (addr, metrics) = start_server();
    let mut child = ClientsGuard(
        Command::new(std::env::current_exe().expect("path of the bench binary"))
            .env(CLIENTS, addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the clients"),
    );
    // The clients say when their clock starts.
    let mut ready = [0u8; 1];
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut ready)
        .expect("clients ready");

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut exhausted = false;
    let mut next = start;
    while start.elapsed() < RUN {
        let t = start.elapsed().as_secs_f64();
        let exhaust = t >= EXHAUSTED.0 && t < EXHAUSTED.1;
        if exhaust != exhausted {
            // Below the descriptors in use: every new one fails with EMFILE,
            // whatever closes meanwhile (the page needs none).
            let soft = if exhaust { EXHAUSTED_NOFILE } else { NOFILE };
            support::set_nofile_soft(soft).expect("set RLIMIT_NOFILE");
            exhausted = exhaust;
        }
        samples.push(Sample::read(t, &metrics));
        next += SAMPLE;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    drop(child);
    report(&samples);
}

/// Kills and reaps the clients' process when dropped.
struct ClientsGuard(Child);

impl Drop for ClientsGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server on its own thread; returns its address and page.
fn start_server() -> (SocketAddr, Metrics) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut core = Core::new().expect("event loop");
        let handle = core.handle();
        let any_port = "127.0.0.1:0".parse().unwrap();
        let listener = TcpListener::bind(&any_port, &handle).expect("bind");
        let addr = listener.local_addr().unwrap();
        let config = server::Config {
            max_connections: SLOTS,
            deadline: DEADLINE,
            per_peer: server::MAX_PER_PEER,
        };
        let (server, metrics) = server::server_and_metrics(listener, &handle, config);
        tx.send((addr, metrics)).unwrap();
        let _ = core.run(server);
    });
    rx.recv().expect("server started")
}

/// One reading of the page.
struct Sample {
    t: f64,
    running: f64,
    queued: f64,
    rejected_total: f64,
    paused: f64,
}

impl Sample {
    fn read(t: f64, metrics: &Metrics) -> Sample {
        let page = metrics.to_string();
        let value = |name: &str| {
            page.lines()
                .filter(|line| !line.starts_with('#'))
                .find_map(|line| {
                    let (n, v) = line.split_once(' ')?;
                    (n == name).then(|| v.parse::<f64>().ok()).flatten()
                })
                .unwrap_or(f64::NAN)
        };
        Sample {
            t,
            running: value("tk_listen_connections_running"),
            queued: value("tk_listen_queued_connections"),
            rejected_total: value("tk_listen_peer_rejected_total"),
            paused: value("tk_listen_accept_paused"),
        }
    }
}

fn report(samples: &[Sample]) {
    let mut csv = String::from("seconds,running,queued,rejected_total,paused\n");
    for s in samples {
        csv.push_str(&format!(
            "{:.1},{},{},{},{}\n",
            s.t, s.running, s.queued, s.rejected_total, s.paused
        ));
    }
    support::write_data("overload.csv", &csv);
    let max = |f: fn(&Sample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
    let paused = samples.iter().filter(|s| s.paused == 1.0).count() as f64 * SAMPLE.as_secs_f64();
    println!(
        "overload: {} samples; running at most {}, queued at most {}, {} per-peer rejections, \
         paused in {:.1} s of samples",
        samples.len(),
        max(|s| s.running),
        max(|s| s.queued),
        max(|s| s.rejected_total),
        paused
    );
    let svg = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data/overload.svg");
    chart(samples, &svg).expect("draw the chart");
    println!("wrote {}", svg.display());
}

/// A line of the chart: its label, colour and points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn chart(samples: &[Sample], output: &Path) -> Result<(), Box<dyn std::error::Error>> {
    const FONT: &str = "sans-serif";
    let top = samples
        .iter()
        .map(|s| s.running.max(s.queued))
        .fold(SLOTS as f64, f64::max)
        * 1.25;
    let root = SVGBackend::new(output, (720, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "examples/http at its cap: 100 slots, 8 per peer, 3 s deadline",
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..RUN.as_secs_f64(), 0.0..top)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 13))
        .x_label_formatter(&|v| format!("{:.0}", v))
        .y_label_formatter(&|v| format!("{:.0}", v))
        .x_desc("seconds")
        .y_desc("connections")
        .draw()?;
    let grey = RGBColor(0xbb, 0xbb, 0xbb);
    chart
        .draw_series(samples.iter().filter(|s| s.paused == 1.0).map(|s| {
            Rectangle::new(
                [(s.t, 0.0), (s.t + SAMPLE.as_secs_f64(), top)],
                grey.mix(0.5).filled(),
            )
        }))?
        .label("accepting paused (EMFILE)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], grey.filled()));
    let per_second = |i: usize| {
        let before = if i == 0 {
            0.0
        } else {
            samples[i - 1].rejected_total
        };
        (samples[i].rejected_total - before) / SAMPLE.as_secs_f64()
    };
    let series: [Series<'_>; 3] = [
        (
            "running connections",
            RGBColor(0x1f, 0x77, 0xb4),
            samples.iter().map(|s| (s.t, s.running)).collect(),
        ),
        (
            "clients waiting in the accept queue",
            RGBColor(0xd6, 0x27, 0x28),
            samples.iter().map(|s| (s.t, s.queued)).collect(),
        ),
        (
            "per-peer rejections per second / 10",
            RGBColor(0x2c, 0xa0, 0x2c),
            (0..samples.len())
                .map(|i| (samples[i].t, per_second(i) / 10.0))
                .collect(),
        ),
    ];
    for (label, color, points) in series {
        chart
            .draw_series(LineSeries::new(
                points.into_iter().filter(|p| p.1.is_finite()),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The clients' process: every thread from its own source address, each
/// loop bounded by the run's time.
fn clients(addr: SocketAddr) {
    let start = Instant::now();
    let at = move |seconds: f64| start + Duration::from_secs_f64(seconds);
    let mut threads = Vec::new();
    for i in 0..30u8 {
        let source = format!("127.0.0.{}", 10 + i);
        threads.push(thread::spawn(move || {
            sleep_until(at(1.0));
            while Instant::now() < at(19.0) {
                if request(&source, addr).is_err() {
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }));
    }
    for peer in 0..15u8 {
        for _ in 0..8 {
            let source = format!("127.0.1.{}", 1 + peer);
            threads.push(thread::spawn(move || {
                sleep_until(at(3.0));
                while Instant::now() < at(17.0) {
                    // Send nothing: held until the deadline drops it.
                    match connect_from(&source, addr) {
                        Ok(mut idle) => {
                            let _ = idle.read_to_end(&mut Vec::new());
                        }
                        Err(_) => thread::sleep(Duration::from_millis(50)),
                    }
                }
            }));
        }
    }
    threads.push(thread::spawn(move || {
        sleep_until(at(7.0));
        while Instant::now() < at(9.0) {
            let burst: Vec<_> = (0..30)
                .filter_map(|_| connect_from("127.0.2.1", addr).ok())
                .collect();
            for mut client in burst {
                let _ = client.write_all(b"GET / HTTP/1.1\r\n\r\n");
                let _ = client.read_to_end(&mut Vec::new());
            }
            thread::sleep(Duration::from_millis(250));
        }
    }));
    // Our clock has started.
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(b"r");
    let _ = stdout.flush();
    for thread in threads {
        let _ = thread.join();
    }
}

fn sleep_until(when: Instant) {
    thread::sleep(when.saturating_duration_since(Instant::now()));
}

/// A connection to `addr` from the address `source`.
fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<net::TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let source: SocketAddr = format!("{}:0", source).parse().unwrap();
    socket.bind(&source.into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    let stream: net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// One `GET /`, read to its end.
fn request(source: &str, addr: SocketAddr) -> std::io::Result<()> {
    let mut client = connect_from(source, addr)?;
    client.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    client.read_to_end(&mut Vec::new())?;
    Ok(())
}
