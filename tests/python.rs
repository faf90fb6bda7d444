//! Python frames in events, checked the way a user reads them, on every CPython this machine
//! has (`common::pythons`: `python3` on PATH, Debian's `/usr/bin/python3.11` with libpython in
//! the executable, every pyenv version, and `SIGAUDIT_TEST_PYTHONS`): 3.8 to 3.15 get their
//! frames, older ones the plain statement why not. An interpreter the machine lacks is skipped
//! with a note on stderr, so a machine without pyenv still runs what it has.
//!
//! The motivating bug is the example in examples/echild/: importing `helper` ignores SIGCHLD, and
//! `subprocess.check_call(["false"])` then returns 0.

mod common;

use common::pythons::{self, Python};
use common::{Dir, Run, of_kind, s};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The supported interpreters to test.
fn pythons() -> Vec<Python> {
    pythons::supported()
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

/// An event's script frames, innermost first; each is a Python one.
fn frames(ev: &Value) -> &[Value] {
    let frames = ev["script"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for f in frames {
        assert_eq!(s(f, "language"), "python", "{ev}");
    }
    frames
}

/// The version as events name it: in full from 3.11 (`Py_Version`), the minor one before.
fn shown_version(python: &Python) -> String {
    if python.version >= (3, 11) {
        python.full.clone()
    } else {
        python.minor()
    }
}

/// Why an event that runs Python has no frames: (reason, text).
fn missing(ev: &Value) -> Option<(&str, &str)> {
    let m = ev.get("script_missing").filter(|m| m.is_object())?;
    Some((s(m, "reason"), s(m, "text")))
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

/// Asserts that `ev`'s frames in `file` are where `want` says: (index from the innermost frame,
/// line, function).
fn assert_frames(ev: &Value, run: &Run, file: &Path, want: &[(usize, i64, &str)]) {
    for &(index, line, function) in want {
        assert_eq!(
            find_frame(ev, file, line, function),
            Some(index),
            "{function} at line {line}\n{run}"
        );
    }
}

/// Runs `source` (saved as `name` in a fresh folder) in log mode; it must succeed and report
/// exactly one `ignore` event. Returns the run, that event and the script's path.
fn one_ignore(python: &Python, name: &str, source: &str) -> (Run, Value, PathBuf) {
    let dir = Dir::new(&format!("py-{}", name.trim_end_matches(".py")));
    let run = run_script(&dir, python, "log", name, source).success();
    let events = run.events();
    let ignores = of_kind(&events, "ignore");
    assert_eq!(ignores.len(), 1, "one ignore event\n{run}");
    let ev = ignores[0].clone();
    (run, ev, dir.join(name))
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
    assert_eq!(ev["script_truncated"], false, "{run}");
    assert_eq!(missing(ev), None, "{run}");
}

/// The README example on every supported version: the ignore names helper.py's line and the
/// import that ran it; the `echild` event names it as its cause, and its own stack names the
/// line of app.py that waited (`check_call`, through subprocess's wait, made without the GIL).
#[test]
fn log_mode_names_the_helper_line_the_import_chain_and_the_waiting_line() {
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
        let first = &cause["script"][0];
        assert_eq!(s(first, "language"), "python", "{run}");
        assert_eq!(
            Path::new(s(first, "file")),
            example("helper.py"),
            "the cause is helper.py\n{run}"
        );
        assert_eq!(first["line"], helper_line(), "{run}");
        assert_eq!(s(first, "function"), "<module>", "{run}");
        assert_eq!(cause["script_missing"], Value::Null, "{run}");

        // The waiting thread's own stack: subprocess's wait innermost, app.py's call outermost.
        let waited = frames(echild[0]);
        assert!(
            s(&waited[0], "file").ends_with("/subprocess.py"),
            "the wait is subprocess's\n{run}"
        );
        let call = line_of(&example("app.py"), "subprocess.check_call(");
        assert_eq!(
            find_frame(echild[0], &example("app.py"), call, "<module>"),
            Some(waited.len() - 1),
            "the waiting line of app.py\n{run}"
        );
        assert_eq!(missing(echild[0]), None, "{run}");
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

/// ctypes releases the GIL around a `CDLL` call (and holds it for a `PyDLL` one). Either way the
/// calling line is named: with the GIL, from the thread's frames directly; without it, from the
/// same frames read through `process_vm_readv` (see the module docs of `src/python`).
#[test]
fn a_call_with_or_without_the_gil_names_the_calling_line() {
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
        let script = dir.join("via_ctypes.py");
        for (ev, outer) in [(ignores[0], 8), (ignores[1], 9)] {
            assert_eq!(s(ev, "via"), "signal", "{run}");
            assert_eq!(find_frame(ev, &script, 6, "ignore"), Some(0), "{run}");
            assert_eq!(find_frame(ev, &script, outer, "<module>"), Some(1), "{run}");
            assert_eq!(missing(ev), None, "{run}");
        }
    }
}

/// Where the kernel refuses `process_vm_readv` (here: a seccomp filter the script installs), the
/// thread states cannot be looked at safely: no frames, and the reason, in one line.
#[test]
fn without_process_vm_readv_the_reason_is_given() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("note: the seccomp filter of this test is for x86_64: skipped");
        return;
    }
    let source = "\
import ctypes, signal, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
# A BPF program: process_vm_readv (310 on x86_64) fails with EPERM, the rest is allowed.
prog = [(0x20, 0, 0, 0), (0x15, 0, 1, 310), (0x06, 0, 0, 0x00050001), (0x06, 0, 0, 0x7fff0000)]
raw = b''.join(struct.pack('HBBI', *i) for i in prog)
buf = ctypes.create_string_buffer(raw)
fprog = struct.pack('HxxxxxxQ', len(prog), ctypes.addressof(buf))
fbuf = ctypes.create_string_buffer(fprog)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0  # PR_SET_SECCOMP, FILTER
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
print('done', flush=True)
";
    for python in pythons() {
        let (run, ev, _) = one_ignore(&python, "sandboxed.py", source);
        assert!(frames(&ev).is_empty(), "{run}");
        let (reason, text) = missing(&ev).expect("a reason");
        assert_eq!(reason, "no-safe-read", "{run}");
        assert!(
            text.starts_with(&format!("Python {}", python.minor()))
                && text.contains("process_vm_readv"),
            "{run}"
        );
    }
}

/// A thread other than the main one gets its own frames, with and without the GIL (its thread
/// state is found by its `thread_id`; the main thread's frames must not show).
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
        assert_eq!(find_frame(released, &script, 6, "ignore"), Some(0), "{run}");
        assert_eq!(find_frame(released, &script, 10, "work"), Some(1), "{run}");
        for ev in [held, released] {
            assert!(
                frames(ev).iter().all(|f| s(f, "function") != "<module>"),
                "the main thread's frames are not the worker's\n{run}"
            );
        }
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
                let waited = line_of(&script, "code = subprocess.run");
                for ev in &echild {
                    assert_ne!(ev["tid"], ignores[0]["tid"], "from a worker\n{run}");
                    assert_eq!(ev["cause"]["script"][0]["line"], marker, "{run}");
                    // The waiting worker's own stack, read while it waits without the GIL.
                    assert!(
                        find_frame(ev, &script, waited, "work").is_some(),
                        "the worker's waiting line\n{run}"
                    );
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
            let f = &frames(ignores[0])[1];
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
# libc's signal() through ctypes: teardown clears the signal module's handlers (3.8).
import ctypes
libc_signal = ctypes.CDLL(None).signal
libc_signal.restype = ctypes.c_void_p
libc_signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
class Late:
    def __del__(self, sig=libc_signal, chld=int(signal.SIGCHLD), write=os.write):
        sig(chld, 0)  # SIG_DFL
        sig(chld, 1)  # SIG_IGN
        write(1, b'__del__ ran\\n')
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
        assert_eq!(
            missing(ignores[1]),
            Some((
                "finalizing",
                format!(
                    "Python {}: no Python frames (the interpreter is shutting down)",
                    shown_version(&python)
                )
                .as_str()
            )),
            "{run}"
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
        // The others are made by C code with no interpreter frame on its stack: plain native
        // events, nothing missing.
        assert!(ignores.iter().all(|e| missing(e).is_none()), "{run}");
        let f = &frames(ignores[1])[1];
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
    // Qualified names from 3.11, plain ones before; comprehensions inlined from 3.12.
    let functions = [
        "<module>",
        "f",
        "f.<locals>.<listcomp>",
        "<listcomp>",
        "C.m",
        "m",
        "gen",
    ];
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

/// A Python signal handler that ignores SIGCHLD: the handler's line, then the line the signal
/// interrupted, then its callers.
#[test]
fn a_python_signal_handler_that_ignores_sigchld() {
    let source = "\
import os, signal
def on_usr1(signo, frame):
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
signal.signal(signal.SIGUSR1, on_usr1)
def work():
    os.kill(os.getpid(), signal.SIGUSR1)
    return 1
work()
print('done', flush=True)
";
    for python in pythons() {
        let (run, ev, script) = one_ignore(&python, "handler.py", source);
        assert_frames(&ev, &run, &script, &[(1, 3, "on_usr1"), (3, 8, "<module>")]);
        // The handler runs at the interpreter's next check, on the kill line or just after.
        let work = &frames(&ev)[2];
        assert_eq!(s(work, "function"), "work", "{run}");
        assert!(
            [6, 7].contains(&work["line"].as_i64().unwrap_or(0)),
            "{run}"
        );
    }
}

/// An ignore made inside a generator: the generator's line, then the loop that drives it.
#[test]
fn a_generator() {
    let source = "\
import signal
def steps():
    yield 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    yield 2
for step in steps():
    pass
print('done', flush=True)
";
    for python in pythons() {
        let (run, ev, script) = one_ignore(&python, "steps.py", source);
        assert_frames(&ev, &run, &script, &[(1, 4, "steps"), (2, 6, "<module>")]);
    }
}

/// See: the safety argument for reading a waiting thread's frames (src/python/mod.rs). Daemon
/// threads keep failing their waits (SIGCHLD is ignored) while the main thread ends, so the
/// interpreter shuts down and frees their thread states while `echild` events read them. Each
/// run must end as Python ends it, with only complete records, however the race falls.
#[test]
fn echild_events_racing_interpreter_shutdown() {
    let source = "\
import os, random, signal, threading, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
failed = threading.Event()
def wait_forever():
    while True:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            failed.set()
for _ in range(4):
    threading.Thread(target=wait_forever, daemon=True).start()
assert failed.wait(30)
time.sleep(random.random() / 20)
print('exiting', flush=True)
";
    for python in pythons() {
        let dir = Dir::new("py-shutdown-race");
        let script = dir.write("race.py", source);
        let mut echild = 0;
        for _ in 0..10 {
            let run = run_py(&dir, &python, "log", &[script.as_os_str()]);
            assert_eq!(run.status.code(), Some(0), "{run}");
            assert!(run.stdout.contains("exiting"), "{run}");
            let events = run.events();
            for ev in of_kind(&events, "echild") {
                echild += 1;
                // A frame, if read, is the waiting line or its callers; a reason otherwise.
                if let Some(f) = frames(ev).first() {
                    assert_eq!(s(f, "function"), "wait_forever", "{run}");
                } else {
                    assert!(missing(ev).is_some(), "{run}");
                }
            }
        }
        assert!(echild >= 10, "each run has failed waits");
    }
}

/// Versions before 3.8 (pyenv's 2.7, 3.6 and 3.7 here) are detected, and their events say
/// plainly why they have no Python frames; the events are still reported and nothing crashes.
#[test]
fn older_python_versions_get_the_plain_statement() {
    let older = pythons::unsupported();
    if older.is_empty() {
        eprintln!("note: no Python before 3.8 on this machine: nothing to check");
    }
    // Python 2 compatible; the `echild` cause carries the statement too.
    let source = "\
import signal, subprocess
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
print('status=%d' % subprocess.call(['false']))
";
    for python in older {
        let dir = Dir::new("py-older");
        let run = run_script(&dir, &python, "log", "older.py", source).success();
        let events = run.events();
        let ignores = of_kind(&events, "ignore");
        assert_eq!(ignores.len(), 1, "{run}");
        let want = format!(
            "Python {}: no Python frames (supported: 3.8 to 3.15)",
            python.minor()
        );
        assert!(frames(ignores[0]).is_empty(), "{run}");
        assert_eq!(
            missing(ignores[0]),
            Some(("unsupported-version", want.as_str())),
            "{run}"
        );
        assert_eq!(
            s(&ignores[0]["script_missing"], "version"),
            python.minor(),
            "{run}"
        );
        for ev in of_kind(&events, "echild") {
            assert_eq!(
                missing(&ev["cause"]),
                Some(("unsupported-version", want.as_str())),
                "{run}"
            );
        }
        eprintln!("checked: Python {} gets the plain statement", python.full);
    }
}
