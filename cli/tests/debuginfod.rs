//! Names for a stripped program from a real debuginfod server (elfutils' `debuginfod`, started
//! here on a loopback port of its own, indexing a folder of the test, with its database, its
//! scratch files and the client's cache all inside the test folder): found by the build ID each
//! record carries, cached for the next run, and every failure said while the raw frames stay.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A debuginfod server for one test, stopped when dropped.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Serves the ELF files under `d/served`, once it has indexed `expect` debug files.
    fn start(d: &Dir, expect: usize) -> Option<Server> {
        let debuginfod = tool("debuginfod")?;
        let log = d.join("server.log");
        for _ in 0..5 {
            // A port free a moment ago; if another process takes it first, the server fails to
            // start and another is tried.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let _ = std::fs::remove_file(d.join("db.sqlite"));
            let log_file = std::fs::File::create(&log).expect("server log");
            let child = Command::new(&debuginfod)
                .args(["-F", "-c", "1", "-t", "0", "-g", "0", "-v", "-p"])
                .arg(port.to_string())
                .arg("-d")
                .arg(d.join("db.sqlite"))
                .arg(d.join("served"))
                .env("TMPDIR", &d.path)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("server log"))
                .stderr(log_file)
                .spawn()
                .expect("start debuginfod");
            let mut server = Server {
                child: Some(child),
                port,
                log: log.clone(),
            };
            if server.wait_until_indexed(expect) {
                return Some(server);
            }
        }
        panic!("debuginfod did not start; see {}", log.display());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits (up to the time-out) for the server to answer with `expect` debug files indexed;
    /// false if it exited (its port was taken).
    fn wait_until_indexed(&mut self, expect: usize) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && child.try_wait().expect("wait for debuginfod").is_some()
            {
                self.child = None;
                return false;
            }
            if self.metric("found_debuginfo_total{source=\"files\"}") >= expect as u64 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "debuginfod indexed nothing in {TIMEOUT:?}; see {}",
            self.log.display()
        );
    }

    /// A counter from the server's `/metrics` (0 when absent or the server is unreachable).
    fn metric(&self, name: &str) -> u64 {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return 0;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Debug-file requests the server has answered so far.
    fn requests(&self) -> u64 {
        self.metric("http_requests_total{type=\"debuginfo\"}")
    }

    /// Requests for the debug file of `build_id` so far, from the server's log.
    fn requests_for(&self, build_id: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.matches(&format!("GET /buildid/{build_id}/debuginfo "))
            .count()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `gcc -g` builds `ignorer` from the fixture, its debug information goes to
/// `served/ignorer.debug` (objcopy --only-keep-debug), and the program is stripped. Returns its
/// build ID.
fn stripped_program(d: &Dir) -> String {
    d.cc("ignorer", "ignorer.c", &[]);
    std::fs::create_dir_all(d.join("served")).unwrap();
    d.plain("objcopy")
        .args(["--only-keep-debug", "ignorer", "served/ignorer.debug"])
        .run()
        .code(0);
    d.plain("strip").arg("ignorer").run().code(0);
    build_id(&d.join("ignorer"))
}

/// The GNU build ID of an ELF file, as readelf reads it.
fn build_id(path: &Path) -> String {
    let run = run_with_timeout(Command::new("readelf").arg("-n").arg(path));
    run.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build ID\n{run}"))
        .to_string()
}

/// The library's records for `./ignorer`, also in `events.jsonl`.
fn record(d: &Dir) -> String {
    let raw = ignorer_records(d);
    d.write("events.jsonl", &raw);
    raw
}

/// `sigaudit symbolize ARGS` with the client's variables pointing at `url` (or at nothing) and
/// its cache, and every other cache, inside the test folder.
fn symbolize(d: &Dir, url: Option<&str>) -> Cmd {
    let mut cmd = d
        .sigaudit()
        .env("DEBUGINFOD_CACHE_PATH", d.join("cache"))
        .env("XDG_CACHE_HOME", d.join("xdg"))
        .env("HOME", &d.path)
        .env("DEBUGINFOD_TIMEOUT", "5")
        .arg("symbolize");
    if let Some(url) = url {
        cmd = cmd.env("DEBUGINFOD_URLS", url);
    }
    cmd
}

/// The frame of `setup_signals` in the `ignore` record (by its offset, which a symbolized frame
/// and a raw one share).
fn ignore_frames(stdout: &str) -> Vec<serde_json::Value> {
    let out = records(stdout);
    let ignore = out
        .iter()
        .find(|r| r["event"] == "ignore")
        .expect("an ignore record");
    ignore["backtrace"].as_array().unwrap().clone()
}

fn program_frames(frames: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    frames
        .iter()
        .filter(|f| {
            f["module"]
                .as_str()
                .is_some_and(|m| m.ends_with("/ignorer"))
        })
        .collect()
}

/// Asserts that the ignore's innermost program frame is `setup_signals` at the fixture's
/// `ignore-here` line.
fn assert_named(stdout: &str) {
    let frames = ignore_frames(stdout);
    let f = program_frames(&frames)[0];
    assert_eq!(f["function"], "setup_signals", "{f}");
    assert!(
        f["file"].as_str().unwrap().ends_with("/fixtures/ignorer.c"),
        "{f}"
    );
    assert_eq!(f["line"], line_of("ignorer.c", "ignore-here") as i64, "{f}");
}

/// Asserts that no program frame got a name, and that every frame kept what it had (other
/// modules may have gained names from their own debug information).
fn assert_raw(stdout: &str, raw: &str) {
    let frames = ignore_frames(stdout);
    for f in program_frames(&frames) {
        assert!(
            f.get("function").is_none() && f.get("line").is_none(),
            "{f}"
        );
    }
    let before = ignore_frames(raw);
    assert_eq!(frames.len(), before.len());
    for (old, new) in before.iter().zip(&frames) {
        for (k, v) in old.as_object().unwrap() {
            assert_eq!(&new[k], v, "{k} changed in {new}");
        }
    }
}

#[test]
fn a_stripped_program_is_named_through_the_server_then_from_the_cache() {
    let d = Dir::new("debuginfod_named");
    let id = stripped_program(&d);
    let raw = record(&d);
    // Every frame of the program carries the build ID of the file that ran.
    let frames = ignore_frames(&raw);
    assert!(!program_frames(&frames).is_empty(), "{raw}");
    for f in program_frames(&frames) {
        assert_eq!(f["build_id"], id.as_str(), "{f}");
    }
    let Some(server) = Server::start(&d, 1) else {
        return;
    };

    // Without DEBUGINFOD_URLS: no names, and the readable form says why and what to do.
    let run = symbolize(&d, None)
        .args(["--text", "events.jsonl"])
        .run()
        .code(0);
    assert!(run.stdout.contains("note: ignorer is stripped"), "{run}");
    assert!(run.stdout.contains("or set DEBUGINFOD_URLS"), "{run}");
    assert_eq!(run.stdout.matches("is stripped").count(), 1, "{run}");
    assert_eq!(server.requests(), 0);

    // With it: the server's debug file names it, and the download is said on the terminal.
    let (run, terminal) =
        with_stderr_on_a_terminal(symbolize(&d, Some(&server.url())).arg("events.jsonl"));
    assert!(run.status.success(), "{run}\n{terminal}");
    assert_named(&run.stdout);
    assert!(
        terminal.contains(&format!(
            "sigaudit: downloaded debug info for ignorer (build ID {}...), ",
            &id[..12]
        )) && terminal.contains(&format!("from {}/buildid/{id}/debuginfo", server.url())),
        "{terminal}"
    );
    assert_eq!(server.requests_for(&id), 1);
    let asked = server.requests();
    assert!(d.join("cache").join(&id).join("debuginfo").is_file());

    // Again: from the cache, without a word to the server.
    let (again, terminal) =
        with_stderr_on_a_terminal(symbolize(&d, Some(&server.url())).arg("events.jsonl"));
    assert!(again.status.success(), "{again}\n{terminal}");
    assert_eq!(again.stdout, run.stdout);
    assert!(!terminal.contains("downloaded"), "{terminal}");
    assert_eq!(server.requests(), asked, "the second run asked the server");

    // `sigaudit -- COMMAND` uses the same lookup for what it shows and its summary.
    let run = d
        .sigaudit()
        .env("DEBUGINFOD_URLS", server.url())
        .env("DEBUGINFOD_CACHE_PATH", d.join("cache"))
        .args(["--", "./ignorer"])
        .run()
        .code(0);
    let want = format!(
        "where: setup_signals at {}:{}",
        fixture("ignorer.c").display(),
        line_of("ignorer.c", "ignore-here")
    );
    assert!(run.summary().contains(&want), "{run}");
    assert!(!run.stderr.contains("is stripped"), "{run}");
    // And without it, the summary says what to do, once.
    let run = d.sigaudit().args(["--", "./ignorer"]).run().code(0);
    assert!(run.summary().contains("where: ignorer+0x"), "{run}");
    assert_eq!(
        run.summary().matches("note: ignorer is stripped").count(),
        1,
        "{run}"
    );
}

#[test]
fn a_server_down_or_silent_is_said_and_the_raw_frames_stay() {
    let d = Dir::new("debuginfod_down");
    stripped_program(&d);
    let raw = record(&d);
    let Some(mut server) = Server::start(&d, 1) else {
        return;
    };
    let url = server.url();
    server.stop();
    let run = symbolize(&d, Some(&url))
        .arg("events.jsonl")
        .run()
        .code(0)
        .stderr_has("no debug info for ignorer (build ID ")
        .stderr_has(&format!(
            "the debuginfod server is down: connection refused (DEBUGINFOD_URLS={url})"
        ));
    assert_raw(&run.stdout, &raw);
    // Said once, not once per module or frame.
    assert_eq!(run.stderr.matches("server is down").count(), 1, "{run}");

    // A server that takes the connection and never answers: DEBUGINFOD_TIMEOUT.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = {
        let stop = stop.clone();
        silent.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((s, _)) = silent.accept() {
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let run = symbolize(&d, Some(&url))
        .env("DEBUGINFOD_TIMEOUT", "1")
        .env("DEBUGINFOD_RETRY_LIMIT", "0")
        .arg("events.jsonl")
        .run();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = holder.join();
    let run = run
        .code(0)
        .stderr_has("did not answer within DEBUGINFOD_TIMEOUT=1 seconds");
    assert_raw(&run.stdout, &raw);
    assert!(started.elapsed() < Duration::from_secs(30), "{run}");
}

#[test]
fn a_build_id_that_matches_nothing_gets_no_names() {
    let d = Dir::new("debuginfod_unknown");
    stripped_program(&d);
    let raw = record(&d);
    let Some(server) = Server::start(&d, 1) else {
        return;
    };
    // The record's program frames claim a build nobody has; the file at their path is a
    // different build with full debug information, which must not be used either.
    let unknown = "00112233445566778899aabbccddeeff00112233";
    let edited: String = raw
        .lines()
        .map(|l| {
            let mut rec: serde_json::Value = serde_json::from_str(l).unwrap();
            for f in rec["backtrace"].as_array_mut().unwrap() {
                if f["module"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("/ignorer"))
                {
                    f["build_id"] = unknown.into();
                }
            }
            format!("{rec}\n")
        })
        .collect();
    d.write("events.jsonl", &edited);
    d.cc("ignorer", "ignorer.c", &[]);
    let run = symbolize(&d, Some(&server.url()))
        .arg("events.jsonl")
        .run()
        .code(0)
        .stderr_has(&format!(
            "no debug info for ignorer (build ID {}...): not found",
            &unknown[..12]
        ));
    assert_raw(&run.stdout, &edited);
    assert_eq!(server.requests_for(unknown), 1);
}

#[test]
fn an_old_record_is_named_from_its_own_build_not_the_rebuilt_program() {
    let d = Dir::new("debuginfod_rebuilt");
    let old = stripped_program(&d);
    let raw = record(&d);
    let Some(server) = Server::start(&d, 1) else {
        return;
    };
    // Rebuilt from a changed source, with full debug information, at the same path: its code
    // moved, so its DWARF would name other lines (and another file) at the record's offsets.
    let source = std::fs::read_to_string(fixture("ignorer.c")).unwrap();
    let changed = format!(
        "static volatile int pad;\nvoid padding(void) {{ {} }}\n{source}",
        "pad++; ".repeat(200)
    );
    d.write("rebuilt.c", &changed);
    d.plain("gcc")
        .args(["-g", "-O0", "-o", "ignorer", "rebuilt.c"])
        .run()
        .code(0);
    assert_ne!(build_id(&d.join("ignorer")), old);
    let run = symbolize(&d, Some(&server.url()))
        .arg("events.jsonl")
        .run()
        .code(0);
    assert_named(&run.stdout);
    for f in program_frames(&ignore_frames(&run.stdout)) {
        assert!(
            !f["file"].as_str().unwrap_or("").ends_with("rebuilt.c"),
            "{f}"
        );
    }
    assert_eq!(server.requests_for(&old), 1);
    drop(raw);
}

/// Runs `cmd` with stdout piped and stderr on a fresh pseudo-terminal; returns the run and what
/// the terminal showed.
fn with_stderr_on_a_terminal(cmd: Cmd) -> (Run, String) {
    let (master, slave) = open_pty();
    let mut command = cmd.command;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    let shown = format!("{command:?}");
    let mut child = command.spawn().expect("start the command");
    drop(command); // our copy of the terminal's slave side, so that its end is seen
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let terminal = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once every holder of the slave side has closed it.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
    });
    let status = wait_with_timeout(&mut child, &shown, TIMEOUT);
    let stdout = reader.join().unwrap();
    let terminal = terminal.join().unwrap();
    (
        Run {
            command: shown,
            status,
            stdout,
            stderr: terminal.clone(),
        },
        terminal,
    )
}
