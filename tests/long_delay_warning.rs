//! `sleep_on_error` warns once, when it is built, about a delay so long that
//! the server would look dead; both stacks. Its own test binary: it captures
//! the log.

mod support;

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use futures::{stream, Async};
use log::Level;
use tk_listen::ListenExt;
use tokio_core::reactor::Core;

use support::{logs, poll_stream_once, spawn, CountingNotify};

/// The start of the warning.
const WARNING: &str = "sleep_on_error(";

/// The tests of this binary share one log; each runs alone.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The warnings about long delays logged while `build` ran.
fn warnings_while(build: impl FnOnce()) -> Vec<String> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    logs::capture();
    let before = logs::lines().len();
    build();
    logs::lines()[before..]
        .iter()
        .filter(|(level, line)| *level == Level::Warn && line.starts_with(WARNING))
        .map(|(_, line)| line.clone())
        .collect()
}

fn emfile() -> io::Error {
    io::Error::from_raw_os_error(libc::EMFILE)
}

#[test]
fn a_delay_over_a_minute_is_warned_about_once_when_the_stream_is_built() {
    let core = Core::new().unwrap();
    let mut built_warnings = Vec::new();
    let warnings = warnings_while(|| {
        let accepts = stream::iter_result(vec![Err::<u32, _>(emfile()), Err(emfile())]);
        let accepts = accepts.sleep_on_error(Duration::MAX, &core.handle());
        built_warnings = logs::lines()
            .iter()
            .filter(|(_, line)| line.starts_with(WARNING))
            .map(|(_, line)| line.clone())
            .collect();
        // A pause starts: no second warning about the delay.
        let mut accepts = spawn(accepts);
        let (_, notify) = CountingNotify::handle();
        assert!(matches!(
            poll_stream_once(&mut accepts, &notify),
            Ok(Async::NotReady)
        ));
    });
    assert_eq!(warnings.len(), 1, "warnings: {:?}", warnings);
    assert!(
        !built_warnings.is_empty(),
        "the warning came only after the stream was built"
    );
    assert!(
        warnings[0].contains("looks dead"),
        "the warning says why: {}",
        warnings[0]
    );
}

#[test]
fn a_delay_of_a_minute_or_less_is_not_warned_about() {
    let core = Core::new().unwrap();
    let warnings = warnings_while(|| {
        for delay in [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(60),
        ] {
            let accepts = stream::iter_ok::<_, io::Error>(Vec::<u32>::new());
            let _ = accepts.sleep_on_error(delay, &core.handle());
        }
    });
    assert_eq!(warnings, Vec::<String>::new());
}

#[cfg(feature = "tokio1")]
#[test]
fn the_tokio1_stream_warns_once_too() {
    use tk_listen::tokio1::ListenExt as _;
    let warnings = warnings_while(|| {
        let accepts = tokio_stream::iter(Vec::<io::Result<u32>>::new());
        let _ = accepts.sleep_on_error(Duration::from_secs(61));
        let accepts = tokio_stream::iter(Vec::<io::Result<u32>>::new());
        let _ = accepts.sleep_on_error(Duration::from_secs(60));
    });
    assert_eq!(warnings.len(), 1, "warnings: {:?}", warnings);
}
