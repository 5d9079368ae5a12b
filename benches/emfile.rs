//! Descriptor exhaustion: CPU burnt while `accept()` fails with `EMFILE`, and
//! how fast accepting resumes once descriptors are free.
//!
//! The bench re-runs its own binary as a child process (`emfile child
//! <variant>`) that lowers its `RLIMIT_NOFILE` to 64 and runs a server on
//! 127.0.0.1. Each connection holds its descriptor until the
//! client half-closes, then answers `hello\n` and closes. The parent connects
//! more clients than the child has descriptors, so the child's `accept()`
//! fails with `EMFILE` while the rest wait in the kernel's backlog, and
//! samples the child's CPU time from `/proc/<pid>/stat` over that window.
//! Then it half-closes every client, which frees the held descriptors, and
//! waits for all replies.
//!
//! Two servers, identical except for accept-error handling:
//!
//! * `tk_listen`: `incoming().sleep_on_error(100 ms).map(..).listen(1000)`;
//! * `naive`: `incoming().then(|r| Ok(r.ok())).filter_map(|c| c)` (skips
//!   every error and retries at once) with the same `.map(..).listen(1000)`.
//!
//! Recovery is measured inside the child: from the first connection that
//! closes after `EMFILE` was seen to the next successful `accept()`.
//!
//! The CPU share is also sampled every 100 ms of the window; the last round's
//! samples of each variant go to `benches/data/emfile_cpu.csv` (`variant,ms,
//! cpu_percent`), which `benches/charts.rs` draws.
//!
//! Settings (`TK_BENCH_ROUNDS`, `TK_BENCH_ROUND_MS`: the CPU window) and
//! figures: `benches/README.md`.
//!
//! Run: `cargo bench --bench emfile`

mod support;

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{self, Shutdown, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures::{Future, Stream};
use tk_listen::ListenExt;
use tokio_core::net::TcpListener;
use tokio_core::reactor::Core;

/// The child's `RLIMIT_NOFILE`.
const LIMIT: u64 = 64;
/// Clients connected at once: more than the child has descriptors.
const CLIENTS: usize = 200;
const DELAY: Duration = Duration::from_millis(100);
/// Time for the child to accept what it can and hit `EMFILE`, before the
/// CPU window starts.
const SETTLE: Duration = Duration::from_millis(500);
/// How long the parent waits for all replies after freeing descriptors.
const DRAIN: Duration = Duration::from_secs(5);
/// How often the child's CPU time is sampled during the window.
const SAMPLE: Duration = Duration::from_millis(100);

const VARIANTS: [&str; 2] = ["tk_listen", "naive"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [first, variant] = args.as_slice() {
        if first == "child" {
            child(variant, LIMIT, CLIENTS);
            return;
        }
    }
    let rounds = support::env_usize("TK_BENCH_ROUNDS", 3).max(1);
    let window = support::env_millis("TK_BENCH_ROUND_MS", 3000);
    println!(
        "emfile: {rounds} rounds x {} variants; child RLIMIT_NOFILE {LIMIT}, {CLIENTS} clients, \
         CPU window {window:?}, pause {DELAY:?}",
        VARIANTS.len()
    );

    let mut results: Vec<Vec<Outcome>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (i, variant) in VARIANTS.iter().enumerate() {
            let outcome = run_round(variant, window);
            println!(
                "  round {round} {variant:<9} CPU {:>5.1}% of a core, {} accept errors, \
                 recovery {}, {}/{CLIENTS} replies",
                outcome.cpu_share * 100.0,
                outcome.accept_errors,
                outcome
                    .recovery
                    .map_or("none (child killed)".to_string(), |r| format!(
                        "{:.1} ms",
                        ms(r)
                    )),
                outcome.replies,
            );
            results[i].push(outcome);
        }
    }

    println!();
    for (variant, outcomes) in VARIANTS.iter().zip(&results) {
        let shares: Vec<f64> = outcomes.iter().map(|o| o.cpu_share * 100.0).collect();
        let (lo, hi) = support::min_max(&shares);
        let recoveries: Vec<f64> = outcomes.iter().filter_map(|o| o.recovery.map(ms)).collect();
        let recovery = if recoveries.len() == outcomes.len() {
            let (rlo, rhi) = support::min_max(&recoveries);
            format!(
                "median {:.1} ms (min {rlo:.1}, max {rhi:.1})",
                support::median(&recoveries)
            )
        } else {
            format!(
                "did not recover in {} of {} rounds",
                outcomes.len() - recoveries.len(),
                outcomes.len()
            )
        };
        println!(
            "{variant:<9} CPU median {:.1}% of a core (min {lo:.1}, max {hi:.1}); recovery {recovery}",
            support::median(&shares)
        );
    }
    println!(
        "goal: tk_listen < 5% of a core, naive most of one; tk_listen recovery <= {} ms",
        DELAY.as_millis() + 20
    );

    let mut csv = String::from("variant,ms,cpu_percent\n");
    for (variant, outcomes) in VARIANTS.iter().zip(&results) {
        for (at, share) in &outcomes.last().expect("at least one round").samples {
            csv.push_str(&format!("{variant},{},{share:.1}\n", at.as_millis()));
        }
    }
    support::write_data("emfile_cpu.csv", &csv);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What one round of one variant measured.
struct Outcome {
    cpu_share: f64,
    /// CPU share (percent of a core) over each sample of the window.
    samples: Vec<(Duration, f64)>,
    accept_errors: usize,
    recovery: Option<Duration>,
    replies: usize,
}

fn run_round(variant: &str, window: Duration) -> Outcome {
    let clients = CLIENTS;
    let exe = std::env::current_exe().expect("path of the bench binary");
    let mut child = Command::new(exe)
        .args(["child", variant])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = match lines.next() {
        Some(Ok(line)) => line
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("child said {line:?}, expected its address")),
        other => panic!("child did not report its address: {other:?}"),
    };

    // More clients than the child has descriptors; the kernel completes the
    // handshakes and queues them in the backlog.
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        let socket = net::TcpStream::connect_timeout(&addr, DRAIN).expect("connect to the child");
        sockets.push(socket);
    }
    thread::sleep(SETTLE);

    let pid = child.id();
    let cpu = || support::process_cpu(pid).expect("read the child's CPU time");
    let (cpu_before, started) = (cpu(), Instant::now());
    let mut samples = Vec::new();
    let (mut last_cpu, mut last_at) = (cpu_before, started);
    while started.elapsed() + SAMPLE <= window {
        thread::sleep(SAMPLE);
        let (now_cpu, now) = (cpu(), Instant::now());
        let share = (now_cpu - last_cpu).as_secs_f64() / (now - last_at).as_secs_f64();
        samples.push((now - started, share * 100.0));
        (last_cpu, last_at) = (now_cpu, now);
    }
    let cpu_share = (last_cpu - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();

    // Free the descriptors: every held connection sees EOF, answers, closes.
    for socket in &sockets {
        let _ = socket.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + DRAIN;
    let mut replies = 0;
    for mut socket in sockets {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        let mut reply = Vec::new();
        if socket.read_to_end(&mut reply).is_ok() && reply == b"hello\n" {
            replies += 1;
        }
    }

    let finished = wait_or_kill(&mut child, Duration::from_secs(2));
    let (mut accept_errors, mut recovery) = (0, None);
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("accept_errors ") {
            accept_errors = n.parse().unwrap_or(0);
        } else if let Some(us) = line.strip_prefix("recovery_us ") {
            recovery = us.parse().ok().map(Duration::from_micros);
        }
    }
    Outcome {
        cpu_share,
        samples,
        accept_errors,
        recovery: if finished { recovery } else { None },
        replies,
    }
}

/// Waits up to `limit` for `child` to exit; kills it otherwise. Returns
/// whether it exited by itself.
fn wait_or_kill(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The child: serve `clients` connections with at most `limit` descriptors,
/// then report and exit.
fn child(variant: &str, limit: u64, clients: usize) {
    let mut core = Core::new().expect("event loop");
    let handle = core.handle();
    let any_port = "127.0.0.1:0".parse().unwrap();
    let listener = TcpListener::bind(&any_port, &handle).expect("bind 127.0.0.1:0");
    // Lowered after the event loop and listener exist, so that only accept()
    // runs out.
    support::set_nofile_soft(limit).expect("lower RLIMIT_NOFILE");

    // Counted from another thread too, which prints it while the server may be
    // too busy to ever finish.
    let accept_errors = Arc::new(AtomicUsize::new(0));
    let reporter_errors = accept_errors.clone();
    let final_errors = accept_errors.clone();
    thread::spawn(move || {
        for _ in 0..2400 {
            thread::sleep(Duration::from_millis(250));
            println!("accept_errors {}", reporter_errors.load(Ordering::Relaxed));
        }
    });
    println!("listening {}", listener.local_addr().unwrap());
    let _ = std::io::stdout().flush();

    let exhausted = Rc::new(Cell::new(false));
    let freed_at: Rc<Cell<Option<Instant>>> = Rc::default();
    let recovered_at: Rc<Cell<Option<Instant>>> = Rc::default();

    let (exhausted_a, freed_a, recovered_a) =
        (exhausted.clone(), freed_at.clone(), recovered_at.clone());
    let accepts = listener.incoming().then(move |result| {
        match &result {
            Err(e) => {
                accept_errors.fetch_add(1, Ordering::Relaxed);
                if e.raw_os_error() == Some(libc::EMFILE) {
                    exhausted_a.set(true);
                }
            }
            Ok(_) => {
                if freed_a.get().is_some() && recovered_a.get().is_none() {
                    recovered_a.set(Some(Instant::now()));
                }
            }
        }
        result
    });
    let freed_s = freed_at.clone();
    let serve = move |(socket, _)| {
        let (exhausted, freed_at) = (exhausted.clone(), freed_s.clone());
        tokio_io::io::read_to_end(socket, Vec::new())
            .and_then(|(socket, _)| tokio_io::io::write_all(socket, b"hello\n"))
            .then(move |result| {
                drop(result); // closes the socket
                if exhausted.get() && freed_at.get().is_none() {
                    freed_at.set(Some(Instant::now()));
                }
                Ok(())
            })
    };
    let server: Box<dyn Future<Item = (), Error = ()>> = match variant {
        "tk_listen" => Box::new(
            accepts
                .sleep_on_error(DELAY, &handle)
                .take(clients as u64)
                .map(serve)
                .listen(1000),
        ),
        "naive" => Box::new(
            accepts
                .then(|result| Ok::<_, ()>(result.ok()))
                .filter_map(|connection| connection)
                .take(clients as u64)
                .map(serve)
                .listen(1000),
        ),
        other => panic!("unknown variant {other:?}; use tk_listen or naive"),
    };
    core.run(server).expect("server failed");

    println!("accept_errors {}", final_errors.load(Ordering::Relaxed));
    let (freed, recovered) = (freed_at.get(), recovered_at.get());
    if let (Some(freed), Some(recovered)) = (freed, recovered) {
        println!("recovery_us {}", (recovered - freed).as_micros());
    }
}
