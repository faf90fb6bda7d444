//! Python frames in events, checked the way a user reads them, on each supported CPython this
//! machine has: the `python3` on PATH, Debian's `/usr/bin/python3.11` (libpython linked into the
//! executable), and pyenv's newest 3.11.x, 3.12.x and 3.13.x (a shared libpython), each once. An
//! interpreter that is missing is skipped with a note on stderr, so a machine without pyenv
//! still runs what it has.
//!
//! The motivating bug is the example in examples/echild/: importing `helper` ignores SIGCHLD, and
//! `subprocess.check_call(["false"])` then returns 0.

mod common;

use common::{Dir, Run, of_kind, s};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A CPython to run the tests with.
struct Python {
    exe: PathBuf,
    /// (major, minor)
    version: (u32, u32),
}

/// Asks `program` (a path or a name on PATH) who it is: the real executable (not a shim) and
/// its version. `None` if it does not run.
fn probe(program: &str) -> Option<Python> {
    let out = Command::new(program)
        .args([
            "-c",
            "import sys; print(sys.executable); print(sys.version_info[0]); print(sys.version_info[1])",
        ])
        .env_remove("LD_PRELOAD")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let exe = PathBuf::from(lines.next()?);
    let major = lines.next()?.trim().parse().ok()?;
    let minor = lines.next()?.trim().parse().ok()?;
    Some(Python {
        exe,
        version: (major, minor),
    })
}

/// The CPython versions (major, minor) whose frames sigaudit reads.
const SUPPORTED: [(u32, u32); 3] = [(3, 11), (3, 12), (3, 13)];

/// pyenv's root (`$PYENV_ROOT`, else `~/.pyenv`), where its versions are, if it exists.
fn pyenv_root() -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))?;
    root.join("versions").is_dir().then_some(root)
}

/// The executable of pyenv's newest CPython 3.`minor`.x release build (a name of digits and
/// dots only: no `3.13.0t`, no `-dev`), if pyenv has one.
fn pyenv_python(minor: u32) -> Option<PathBuf> {
    let versions = pyenv_root()?.join("versions");
    let prefix = format!("3.{minor}.");
    let newest = std::fs::read_dir(&versions)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let patch: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((patch, name))
        })
        .max()?;
    let exe = versions
        .join(newest.1)
        .join("bin")
        .join(format!("python3.{minor}"));
    exe.is_file().then_some(exe)
}

/// The supported interpreters to test: `python3` on PATH, `/usr/bin/python3.11`, pyenv's
/// 3.11.x, 3.12.x and 3.13.x, each once.
fn pythons() -> Vec<Python> {
    let mut candidates = vec!["python3".to_string(), "/usr/bin/python3.11".to_string()];
    for (_, minor) in SUPPORTED {
        match pyenv_python(minor) {
            Some(exe) => candidates.push(exe.display().to_string()),
            None => eprintln!("note: no pyenv CPython 3.{minor}.x: skipped"),
        }
    }
    let mut found: Vec<Python> = Vec::new();
    for candidate in &candidates {
        match probe(candidate) {
            None => eprintln!("note: {candidate} is not available: skipped"),
            Some(p) if !SUPPORTED.contains(&p.version) => eprintln!(
                "note: {candidate} is Python {}.{}, not supported: skipped here",
                p.version.0, p.version.1
            ),
            Some(p) => {
                let real = std::fs::canonicalize(&p.exe).unwrap_or(p.exe.clone());
                let seen = found
                    .iter()
                    .any(|q| std::fs::canonicalize(&q.exe).unwrap_or(q.exe.clone()) == real);
                if !seen {
                    eprintln!(
                        "testing {} (Python {}.{})",
                        p.exe.display(),
                        p.version.0,
                        p.version.1
                    );
                    found.push(p);
                }
            }
        }
    }
    found
}

fn example(name: &str) -> PathBuf {
    common::root().join("examples").join("echild").join(name)
}

/// The 1-based number of the first line of `file` that contains `needle`.
fn line_of(file: &Path, needle: &str) -> i64 {
    let text = std::fs::read_to_string(file).expect("read source");
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {}", file.display())) as i64
        + 1
}

fn frames(ev: &Value) -> &[Value] {
    ev["python"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The index of the first frame in `file` (compared by path) at `line` in `function`.
fn find_frame(ev: &Value, file: &Path, line: i64, function: &str) -> Option<usize> {
    frames(ev).iter().position(|f| {
        Path::new(s(f, "file")) == file && f["line"] == line && s(f, "function") == function
    })
}

/// Runs `args` with `python`, the library preloaded, JSON events, in `mode`.
fn run_py(dir: &Dir, python: &Python, mode: &str, args: &[&std::ffi::OsStr]) -> Run {
    dir.cmd(&python.exe)
        .args(args)
        .audit_json()
        .env("SIGAUDIT_MODE", mode)
        .run()
}

fn run_app(dir: &Dir, python: &Python, mode: &str) -> Run {
    let app = example("app.py");
    run_py(dir, python, mode, &[app.as_os_str()])
}

/// Writes a script into `dir` and runs it.
fn run_script(dir: &Dir, python: &Python, mode: &str, name: &str, source: &str) -> Run {
    let script = dir.write(name, source);
    run_py(dir, python, mode, &[script.as_os_str()])
}

fn helper_line() -> i64 {
    line_of(&example("helper.py"), "signal.signal(signal.SIGCHLD")
}

fn import_line() -> i64 {
    line_of(&example("app.py"), "import helper")
}

/// Checks the `ignore` event of the example: helper.py's line in `<module>`, reached from the
/// `import helper` line of app.py, the innermost user frame being helper.py's.
fn assert_import_chain(ev: &Value, run: &Run) {
    let helper = find_frame(ev, &example("helper.py"), helper_line(), "<module>")
        .unwrap_or_else(|| panic!("no helper.py frame at line {}\n{run}", helper_line()));
    let app = find_frame(ev, &example("app.py"), import_line(), "<module>")
        .unwrap_or_else(|| panic!("no app.py frame at line {}\n{run}", import_line()));
    assert!(
        helper < app,
        "helper.py must be inside app.py's import\n{run}"
    );
    // Only the standard library's signal() wrapper is between the hook and helper.py.
    for f in &frames(ev)[..helper] {
        assert!(
            s(f, "file").ends_with("/signal.py"),
            "unexpected frame before helper.py: {f}\n{run}"
        );
    }
    assert_eq!(ev["python_truncated"], false, "{run}");
}

#[test]
fn log_mode_names_the_helper_line_and_the_import_chain() {
    for python in pythons() {
        let dir = Dir::new("py-example-log");
        let run = run_app(&dir, &python, "log");
        // Exit status 1: the failure of `false` was lost, as without the library.
        assert_eq!(run.status.code(), Some(1), "{run}");
        assert!(
            run.stdout.contains("returned 0: the failure was lost"),
            "{run}"
        );
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "one ignore event\n{run}");
        assert_eq!(s(ignores[0], "action"), "logged", "{run}");
        assert_import_chain(ignores[0], &run);

        let echild = of_kind(&events, "echild");
        assert_eq!(echild.len(), 1, "one echild event\n{run}");
        let cause = &echild[0]["cause"];
        assert_eq!(s(cause, "event"), "ignore", "{run}");
        let first = &cause["python"][0];
        assert_eq!(
            Path::new(s(first, "file")),
            example("helper.py"),
            "the cause is helper.py\n{run}"
        );
        assert_eq!(first["line"], helper_line(), "{run}");
        assert_eq!(s(first, "function"), "<module>", "{run}");
    }
}

#[test]
fn text_mode_shows_the_stack_and_the_cause() {
    for python in pythons() {
        let dir = Dir::new("py-example-text");
        let app = example("app.py");
        let run = dir.cmd(&python.exe).arg(&app).preload().run();
        let helper = format!(
            "File \"{}\", line {}, in <module>",
            example("helper.py").display(),
            helper_line()
        );
        let importer = format!(
            "File \"{}\", line {}, in <module>",
            app.display(),
            import_line()
        );
        assert!(
            run.stderr.contains("Python stack (most recent call last):"),
            "{run}"
        );
        // Most recent call last: the import in app.py comes before helper.py's line.
        let at_import = run
            .stderr
            .find(&importer)
            .unwrap_or_else(|| panic!("{run}"));
        let at_helper = run.stderr.find(&helper).unwrap_or_else(|| panic!("{run}"));
        assert!(at_import < at_helper, "{run}");
        assert!(
            run.stderr.contains(&format!("    at {helper}\n")),
            "the echild cause names helper.py\n{run}"
        );
    }
}

#[test]
fn veto_mode_makes_check_call_raise() {
    for python in pythons() {
        let dir = Dir::new("py-example-veto");
        let run = run_app(&dir, &python, "veto").success();
        assert!(
            run.stdout
                .contains("raised CalledProcessError (exit status 1), as it should"),
            "{run}"
        );
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "{run}");
        assert_eq!(s(ignores[0], "action"), "vetoed", "{run}");
        assert_import_chain(ignores[0], &run);
        assert!(of_kind(&events, "echild").is_empty(), "{run}");
    }
}

/// ctypes releases the GIL around a `CDLL` call (and holds it for a `PyDLL` one): without the
/// GIL the thread's Python frames are not ours to read, so the event has a native backtrace and
/// no Python frames; with it, the calling line is named.
#[test]
fn a_call_without_the_gil_gets_no_python_frames() {
    let source = "\
import ctypes, signal
def ignore(lib):
    f = lib.signal
    f.restype = ctypes.c_void_p
    f.argtypes = [ctypes.c_int, ctypes.c_void_p]
    f(signal.SIGCHLD, 1)  # SIG_IGN
    f(signal.SIGCHLD, 0)  # SIG_DFL
ignore(ctypes.CDLL(None))
ignore(ctypes.PyDLL(None))
print('done', flush=True)
";
    for python in pythons() {
        let dir = Dir::new("py-ctypes");
        let run = run_script(&dir, &python, "log", "via_ctypes.py", source).success();
        assert!(run.stdout.contains("done"), "{run}");
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 2, "{run}");
        let (released, held) = (ignores[0], ignores[1]);
        assert_eq!(s(released, "via"), "signal", "{run}");
        assert!(
            frames(released).is_empty(),
            "GIL released: no frames\n{run}"
        );
        assert!(
            !released["backtrace"]
                .as_array()
                .expect("backtrace")
                .is_empty(),
            "{run}"
        );
        let script = dir.join("via_ctypes.py");
        assert_eq!(
            find_frame(held, &script, 6, "ignore"),
            Some(0),
            "GIL held: the calling line\n{run}"
        );
        assert!(find_frame(held, &script, 9, "<module>").is_some(), "{run}");
    }
}

/// A thread other than the main one reads its own frames when it holds the GIL, and none when it
/// does not. (From 3.12 a thread's state is found through CPython's `pthread` key, which a
/// `threading.Thread` gets when it first runs Python; the main thread's frames must not show.)
#[test]
fn a_worker_thread_gets_its_own_frames() {
    let source = "\
import ctypes, signal, threading
def ignore(lib):
    f = lib.signal
    f.restype = ctypes.c_void_p
    f.argtypes = [ctypes.c_int, ctypes.c_void_p]
    f(signal.SIGCHLD, 1)  # SIG_IGN
    f(signal.SIGCHLD, 0)  # SIG_DFL
def work():
    ignore(ctypes.PyDLL(None))
    ignore(ctypes.CDLL(None))
t = threading.Thread(target=work)
t.start()
t.join()
print('done', flush=True)
";
    for python in pythons() {
        let dir = Dir::new("py-worker");
        let run = run_script(&dir, &python, "log", "worker.py", source).success();
        assert!(run.stdout.contains("done"), "{run}");
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 2, "{run}");
        let (held, released) = (ignores[0], ignores[1]);
        assert_ne!(held["tid"], held["pid"], "from the worker\n{run}");
        let script = dir.join("worker.py");
        assert_eq!(find_frame(held, &script, 6, "ignore"), Some(0), "{run}");
        assert_eq!(find_frame(held, &script, 9, "work"), Some(1), "{run}");
        assert!(
            frames(held).iter().all(|f| s(f, "function") != "<module>"),
            "the main thread's frames are not the worker's\n{run}"
        );
        assert!(
            frames(released).is_empty(),
            "GIL released: no frames\n{run}"
        );
    }
}

/// Eight threads run children while the main thread ignores SIGCHLD between two rounds. vfork
/// children (subprocess uses vfork) must stay silent, each lost status is one `echild` event
/// from a worker naming the main thread's line as the cause, and veto mode loses nothing.
#[test]
fn threads_running_subprocesses_get_exactly_the_expected_events() {
    let source = "\
import signal, subprocess, threading
THREADS, BEFORE = 8, 4
barrier = threading.Barrier(THREADS + 1)
codes, lock = [], threading.Lock()
def work():
    for _ in range(BEFORE):
        assert subprocess.run(['false']).returncode == 1
    barrier.wait()
    barrier.wait()
    code = subprocess.run(['false']).returncode
    with lock:
        codes.append(code)
threads = [threading.Thread(target=work) for _ in range(THREADS)]
for t in threads:
    t.start()
barrier.wait()
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # ignore
barrier.wait()
for t in threads:
    t.join()
print(f'lost={codes.count(0)} kept={codes.count(1)}', flush=True)
";
    for python in pythons() {
        for mode in ["log", "veto"] {
            let dir = Dir::new(&format!("py-threads-{mode}"));
            let start = Instant::now();
            let run = run_script(&dir, &python, mode, "threads.py", source).success();
            let took = start.elapsed();
            assert!(took < Duration::from_secs(20), "took {took:?}\n{run}");
            let script = dir.join("threads.py");
            let marker = line_of(&script, "# ignore");
            let events = run.events();
            let pid = events
                .iter()
                .find(|e| s(e, "event") == "ignore")
                .map(|e| e["pid"].clone())
                .unwrap_or_else(|| panic!("no ignore event\n{run}"));

            let ignores = of_kind(&events, "ignore");
            assert_eq!(ignores.len(), 1, "{run}");
            assert_eq!(
                find_frame(ignores[0], &script, marker, "<module>"),
                Some(1),
                "{run}"
            );
            let echild = of_kind(&events, "echild");
            let inherited = of_kind(&events, "inherited");
            // Nothing from a child before its exec (vfork): every event but an exec'd child's
            // `inherited` is the parent's.
            for ev in &events {
                if s(ev, "event") != "inherited" {
                    assert_eq!(ev["pid"], pid, "event from another process: {ev}\n{run}");
                }
            }
            if mode == "log" {
                assert_eq!(run.field("lost"), "8", "{run}");
                assert_eq!(s(ignores[0], "action"), "logged");
                assert_eq!(echild.len(), 8, "one echild per lost status\n{run}");
                for ev in &echild {
                    assert_ne!(ev["tid"], ignores[0]["tid"], "from a worker\n{run}");
                    assert_eq!(ev["cause"]["python"][0]["line"], marker, "{run}");
                    // os.waitpid releases the GIL: no frames of the waiting thread.
                    assert!(frames(ev).is_empty(), "{run}");
                }
                // Each `false` started after the ignore inherited it.
                assert_eq!(inherited.len(), 8, "{run}");
                assert!(inherited.iter().all(|e| e["pid"] != pid), "{run}");
            } else {
                assert_eq!(run.field("kept"), "8", "{run}");
                assert_eq!(s(ignores[0], "action"), "vetoed");
                assert!(echild.is_empty() && inherited.is_empty(), "{run}");
            }
            assert_eq!(events.len(), 1 + echild.len() + inherited.len(), "{run}");
        }
    }
}

/// Names are converted from every string kind CPython uses, and undecodable bytes of a file
/// name (held as surrogate escapes) come back as the file's own bytes, escaped in valid JSON.
#[test]
fn any_file_name_keeps_json_valid() {
    use std::os::unix::ffi::OsStrExt;
    let source = "\
import signal
def f_ŝ_\u{10400}():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
f_ŝ_\u{10400}()
";
    // (file name as bytes, the name the JSON event gives)
    let names: &[(&[u8], &str)] = &[
        (b"plain.py", "plain.py"),
        ("café.py".as_bytes(), "café.py"),
        ("ŝ.py".as_bytes(), "ŝ.py"),
        ("\u{10400}.py".as_bytes(), "\u{10400}.py"),
        (b"bad\xff\xfe.py", "bad\u{ff}\u{fe}.py"),
    ];
    for python in pythons() {
        let dir = Dir::new("py-names");
        for &(bytes, shown) in names {
            let path = dir.path.join(std::ffi::OsStr::from_bytes(bytes));
            std::fs::write(&path, source).expect("write script");
            let run = run_py(&dir, &python, "log", &[path.as_os_str()]).success();
            let events = run.events();
            let ignores = of_kind(&events, "ignore");
            assert_eq!(ignores.len(), 1, "{run}");
            let f = &ignores[0]["python"][1];
            let file = s(f, "file");
            assert!(
                file.ends_with(&format!("/{shown}")),
                "file {file:?} should end with {shown:?}\n{run}"
            );
            assert_eq!(s(f, "function"), "f_ŝ_\u{10400}", "{run}");
            assert_eq!(f["line"], 3, "{run}");
        }
    }
}

/// An `atexit` handler runs before the interpreter starts finalising: its frames are named. A
/// `__del__` run while modules are torn down must not crash, and gets no frames.
#[test]
fn atexit_and_finalisation() {
    let source = "\
import atexit, os, signal
def at_exit():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # atexit
atexit.register(at_exit)
class Late:
    def __del__(self, signal=signal, os=os):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        os.write(1, b'__del__ ran\\n')
late = Late()
";
    for python in pythons() {
        let dir = Dir::new("py-finalise");
        let run = run_script(&dir, &python, "log", "final.py", source).success();
        assert!(run.stdout.contains("__del__ ran"), "{run}");
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 2, "{run}");
        let script = dir.join("final.py");
        assert_eq!(
            find_frame(ignores[0], &script, 3, "at_exit"),
            Some(1),
            "{run}"
        );
        assert!(
            frames(ignores[1]).is_empty(),
            "finalising: no frames\n{run}"
        );
    }
}

/// A C program that embeds the interpreter: ignores before `Py_Initialize`, from Python, from C
/// while holding the GIL with no Python frame running, and after `Py_Finalize` (when the thread
/// state is gone). Only the Python one has frames, and nothing crashes.
#[test]
fn embedded_interpreter() {
    let source = r#"
#include <Python.h>
#include <signal.h>
#include <stdio.h>

static void ignore_then_restore(void) {
    signal(SIGCHLD, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
}

int main(void) {
    ignore_then_restore();
    Py_Initialize();
    PyRun_SimpleString("import signal\n"
                       "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
                       "signal.signal(signal.SIGCHLD, signal.SIG_DFL)\n");
    ignore_then_restore();
    Py_Finalize();
    ignore_then_restore();
    puts("done");
    return 0;
}
"#;
    for python in pythons() {
        let dir = Dir::new("py-embed");
        let Some(program) = embed(&dir, &python, "embed", source) else {
            continue;
        };
        let run = dir.cmd(&program).audit_json().run().success();
        assert!(run.stdout.contains("done"), "{run}");
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 4, "{run}");
        let with_frames: Vec<usize> = ignores
            .iter()
            .enumerate()
            .filter(|(_, e)| !frames(e).is_empty())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(with_frames, [1], "only the Python call has frames\n{run}");
        let f = &ignores[1]["python"][1];
        assert_eq!((s(f, "file"), &f["line"]), ("<string>", &2.into()), "{run}");
    }
}

/// Compiles C `source` that embeds `python` into a program in `dir`, with the flags of its
/// `python3.X-config`; `None` (with a note) when there is no such tool.
fn embed(dir: &Dir, python: &Python, name: &str, source: &str) -> Option<PathBuf> {
    let config = PathBuf::from(format!("{}-config", python.exe.display()));
    let flags = match Command::new(&config)
        .args(["--cflags", "--embed", "--ldflags"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            eprintln!("note: no {}: embedding skipped", config.display());
            return None;
        }
    };
    let src = dir.write(&format!("{name}.c"), source);
    let args: Vec<&str> = flags.split_whitespace().collect();
    Some(dir.cc(name, &[src.to_str().expect("UTF-8 path")], &args))
}

/// A C signal handler that ignores SIGCHLD, run by a timer while the interpreter calls
/// functions, makes generators and comprehensions: it interrupts the interpreter anywhere,
/// also while it pushes or pops a frame. Every event must name only frames that exist in the
/// program, at lines it has, and nothing may crash.
#[test]
fn a_signal_handler_interrupting_the_interpreter() {
    let source = r#"
#include <Python.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>

static volatile sig_atomic_t ticks, stop;

/* One-shot, armed again by the handler when it is done: the interpreter always runs between
   two ticks, however long an event takes to write. */
static void arm(void) {
    struct itimerval once = {{0, 0}, {0, 3000}};
    setitimer(ITIMER_REAL, &once, NULL);
}

static void on_alarm(int signo) {
    (void)signo;
    ticks++;
    signal(SIGCHLD, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    if (!stop)
        arm();
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    Py_Initialize();
    arm();
    int failed = PyRun_SimpleString(
        "import time\n"
        "def gen(n):\n"
        "    for i in range(n):\n"
        "        yield i\n"
        "class C:\n"
        "    def m(self, x):\n"
        "        return sum(gen(3)) + x\n"
        "def f(n):\n"
        "    c = C()\n"
        "    return [c.m(i) for i in range(n)]\n"
        "end = time.monotonic() + 0.5\n"
        "while time.monotonic() < end:\n"
        "    f(20)\n");
    stop = 1;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    Py_Finalize();
    printf("failed=%d ticks=%d\n", failed, (int)ticks);
    return 0;
}
"#;
    let functions = ["<module>", "f", "f.<locals>.<listcomp>", "C.m", "gen"];
    for python in pythons() {
        let dir = Dir::new("py-signal-handler");
        let Some(program) = embed(&dir, &python, "interrupt", source) else {
            continue;
        };
        let run = dir.cmd(&program).audit_json().run().success();
        assert_eq!(run.field("failed"), "0", "{run}");
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        let ticks: usize = run.field("ticks").parse().expect("ticks");
        assert!(ticks >= 20, "the timer should have fired often\n{run}");
        assert_eq!(ignores.len(), ticks, "one event per tick\n{run}");
        let mut with_frames = 0;
        for ev in &ignores {
            for f in frames(ev) {
                let line = f["line"].as_i64().unwrap_or(0);
                // See: line -1 for a 3.12 generator interrupted at its first instruction, which
                // has no line (now shown at the generator's first line).
                assert!(
                    s(f, "file") == "<string>"
                        && functions.contains(&s(f, "function"))
                        && (1..=13).contains(&line),
                    "a frame the program does not have: {f}\n{run}"
                );
            }
            with_frames += usize::from(!frames(ev).is_empty());
        }
        assert!(
            with_frames * 2 > ignores.len(),
            "most ticks interrupt Python code: {with_frames} of {}\n{run}",
            ignores.len()
        );
    }
}

/// Unsupported CPython versions (from pyenv, when it has them: 2.7, 3.6-3.10 here) are detected
/// and give no frames: the events are still reported and nothing crashes.
#[test]
fn other_python_versions_get_events_without_frames() {
    let Ok(out) = Command::new("pyenv").args(["versions", "--bare"]).output() else {
        eprintln!("note: no pyenv: other Python versions skipped");
        return;
    };
    let versions = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut tried = 0;
    for version in versions.lines() {
        let Ok(prefix) = Command::new("pyenv").args(["prefix", version]).output() else {
            continue;
        };
        let prefix = String::from_utf8_lossy(&prefix.stdout).trim().to_string();
        let exe = Path::new(&prefix).join("bin").join("python");
        let Some(python) = probe(exe.to_str().unwrap_or_default()) else {
            eprintln!("note: pyenv's {version} does not run: skipped");
            continue;
        };
        if SUPPORTED.contains(&python.version) {
            continue;
        }
        let dir = Dir::new("py-other-versions");
        let run = run_script(
            &dir,
            &python,
            "log",
            "other.py",
            "import signal\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\nprint('done')\n",
        )
        .success();
        assert!(run.stdout.contains("done"), "{run}");
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "{version}\n{run}");
        assert!(frames(ignores[0]).is_empty(), "{version}\n{run}");
        eprintln!("checked: unsupported Python {version} gets events without frames");
        tried += 1;
    }
    if tried == 0 {
        eprintln!("note: pyenv has no unsupported Python: nothing to check");
    }
}
