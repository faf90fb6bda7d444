//! The command under hostile conditions (issue 9): records that cannot reach its folder, a folder
//! that is full, removed or holds what no record file is, signals at the wrong moment, and
//! `symbolize` on records that name what is no module. Each test was written to fail on the
//! command before the fix it names.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether this test can use a private mount namespace (root, and `unshare` allowed here);
/// says why not otherwise.
fn can_unshare(d: &Dir) -> bool {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: needs root for a private mount namespace (unshare -m)");
        return false;
    }
    let probe = d
        .plain("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .run();
    if !probe.status.success() {
        eprintln!("skipped: unshare --mount is not permitted here\n{probe}");
        return false;
    }
    true
}

fn tmpdir(d: &Dir) -> std::path::PathBuf {
    let t = d.join("tmp");
    std::fs::create_dir_all(&t).unwrap();
    t
}

/// See: when records could not reach the command's folder (a private `/tmp`, as under systemd's
/// `PrivateTmp=`, bwrap or a container), the summary said "clean run" although a process had
/// ignored SIGCHLD. Here the program hides the folder behind a tmpfs of its own.
#[test]
fn records_from_behind_a_private_tmp_still_reach_the_summary() {
    let d = Dir::new("hostile_private_tmp");
    if !can_unshare(&d) {
        return;
    }
    d.cc("ignorer", "ignorer.c", &[]);
    let tmp = tmpdir(&d);
    let run = d
        .sigaudit()
        .env("TMPDIR", &tmp)
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs sigaudit-test \"$0\" && exec ./ignorer")
        .arg(&tmp)
        .run()
        .code(0);
    assert_eq!(run.field("wait"), "ECHILD", "{run}");
    let pid = run.field("pid");
    let summary = run.summary();
    assert!(!summary.contains("clean run"), "{run}");
    assert!(
        summary.contains(&format!("pid {pid} ignorer: SIGCHLD ignored via signal()")),
        "{run}"
    );
    assert!(
        summary.contains("came through sigaudit's socket instead of its folder")
            && summary.contains("ENOENT"),
        "{run}"
    );
}

/// See: a full disk under the folder ended in "clean run" too.
#[test]
fn a_full_folder_is_never_a_clean_run() {
    let d = Dir::new("hostile_full_tmp");
    if !can_unshare(&d) {
        return;
    }
    d.cc("ignorer", "ignorer.c", &[]);
    let tmp = tmpdir(&d);
    // sigaudit itself runs in the namespace, with TMPDIR on a tiny tmpfs filled to the brim.
    let script = "mount -t tmpfs -o size=16k sigaudit-test \"$0\" || exit 99
        dd if=/dev/zero of=\"$0/fill\" bs=4k count=64 2>/dev/null
        TMPDIR=\"$0\" exec \"$1\" \"$2\" \"$3\"";
    for program in ["./ignorer", "/bin/true"] {
        let run = d
            .plain("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .arg(&tmp)
            .arg(sigaudit())
            .args(["--", program])
            .env("SIGAUDIT_LIB", lib())
            .run();
        let summary = run.summary();
        assert!(!summary.contains("clean run"), "{program}\n{run}");
        assert!(
            summary.contains("was full during the run"),
            "{program}\n{run}"
        );
        if program == "./ignorer" {
            assert!(
                summary.contains("ignorer: SIGCHLD ignored via signal()"),
                "{run}"
            );
        }
    }
}

/// See: a folder removed during the run ended in "clean run".
#[test]
fn a_removed_folder_is_never_a_clean_run() {
    let d = Dir::new("hostile_removed");
    d.cc("ignorer", "ignorer.c", &[]);
    let run = d
        .sigaudit()
        .env("TMPDIR", tmpdir(&d))
        .args([
            "sh",
            "-c",
            "rm -rf \"${SIGAUDIT_OUTPUT%/*}\" && exec ./ignorer",
        ])
        .run()
        .code(0);
    let summary = run.summary();
    assert!(!summary.contains("clean run"), "{run}");
    assert!(summary.contains("was removed during the run"), "{run}");
    // What came after still came, through the socket.
    assert!(
        summary.contains("ignorer: SIGCHLD ignored via signal()"),
        "{run}"
    );
    // A run without an event, whose folder went, is not clean either.
    let run = d
        .sigaudit()
        .env("TMPDIR", tmpdir(&d))
        .args(["sh", "-c", "rm -rf \"${SIGAUDIT_OUTPUT%/*}\""])
        .run()
        .code(0);
    // (The `loaded` records of sh and rm may have gone with the folder before they were read.)
    let summary = run.summary();
    assert!(
        summary.starts_with("sigaudit: no event received from the ")
            && summary.contains(", but records may have been lost"),
        "{run}"
    );
}

/// See: a FIFO named like a record file blocked the command in `open()` for good, and a symlink
/// to `/dev/zero` made it read until memory ran out.
#[test]
fn what_is_no_record_file_in_the_folder_is_skipped_and_said() {
    let d = Dir::new("hostile_folder_files");
    d.cc("ignorer", "ignorer.c", &[]);
    let script = "d=\"${SIGAUDIT_OUTPUT%/*}\"
        mkfifo \"$d/events.1.jsonl\" && ln -s /dev/zero \"$d/events.2.jsonl\" &&
        mkdir \"$d/events.3.jsonl\" && exec ./ignorer";
    let start = Instant::now();
    let run = d
        .sigaudit()
        .env("TMPDIR", tmpdir(&d))
        .args(["sh", "-c", script])
        .run()
        .code(0);
    assert!(start.elapsed() < Duration::from_secs(30), "{run}");
    let summary = run.summary();
    assert!(
        summary.contains("ignorer: SIGCHLD ignored via signal()"),
        "{run}"
    );
    assert!(
        summary.contains("events.1.jsonl in the folder is not a regular file"),
        "{run}"
    );
    assert!(
        summary.contains("events.2.jsonl in the folder is a symlink"),
        "{run}"
    );
    assert!(
        summary.contains("events.3.jsonl in the folder is not a regular file"),
        "{run}"
    );
}

/// See: with the command blocked on a FIFO in its folder, SIGTERM was forwarded to an exited
/// child and the command stayed; killed, it left its folder behind.
#[test]
fn sigterm_ends_the_command_and_its_folder() {
    let d = Dir::new("hostile_sigterm");
    let tmp = tmpdir(&d);
    let script = "d=\"${SIGAUDIT_OUTPUT%/*}\"; mkfifo \"$d/events.1.jsonl\"
        echo \"dir=$d\"; echo ready; exec sleep 30";
    let running = d
        .sigaudit()
        .env("TMPDIR", &tmp)
        .args(["sh", "-c", script])
        .start();
    running.wait_for_line("ready");
    // SAFETY: plain system call to our own child.
    unsafe { libc::kill(running.pid(), libc::SIGTERM) };
    let run = running.finish().code(143);
    let dir = run.field("dir");
    assert!(!Path::new(&dir).exists(), "{dir} left behind\n{run}");
}

/// A run killed outright (SIGKILL cannot be caught) leaves its folder; the next run removes it,
/// and only folders whose run is gone.
#[test]
fn the_folder_of_a_killed_run_is_removed_by_the_next() {
    let d = Dir::new("hostile_sigkill");
    let tmp = tmpdir(&d);
    // The child writes where the folder is and its own pid, then waits.
    let start = |tag: &str| {
        let script =
            format!("echo \"${{SIGAUDIT_OUTPUT%/*}} $$\" > {tag}.info; echo ready; exec sleep 30");
        let running = d
            .sigaudit()
            .env("TMPDIR", &tmp)
            .args(["sh", "-c", &script])
            .start();
        running.wait_for_line("ready");
        let info = std::fs::read_to_string(d.join(&format!("{tag}.info"))).unwrap();
        let (dir, child) = info.trim().split_once(' ').unwrap();
        (running, dir.to_string(), child.parse::<i32>().unwrap())
    };
    let (live, live_dir, live_child) = start("live");
    let (killed, dir, child) = start("killed");
    // SAFETY: plain system calls to our own processes: sigaudit, then its orphaned child.
    unsafe {
        libc::kill(killed.pid(), libc::SIGKILL);
        libc::kill(child, libc::SIGKILL);
    }
    let _ = killed.finish();
    assert!(Path::new(&dir).exists());
    d.sigaudit().env("TMPDIR", &tmp).arg("true").run().code(0);
    assert!(
        !Path::new(&dir).exists(),
        "the killed run's folder is still there"
    );
    assert!(
        Path::new(&live_dir).exists(),
        "a live run's folder was removed"
    );
    // SAFETY: plain system call to the live run's child, which ends it.
    unsafe { libc::kill(live_child, libc::SIGTERM) };
    let _ = live.finish();
}

/// See: `symbolize` blocked for good on a record whose module path was a FIFO.
#[test]
fn symbolize_opens_only_regular_files() {
    let d = Dir::new("hostile_symbolize_fifo");
    let fifo = d.join("module.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let record = format!(
        "{{\"event\":\"ignore\",\"pid\":1,\"backtrace\":[{{\"addr\":\"0x10\",\"module\":{:?},\"offset\":\"0x10\"}}]}}\n",
        fifo.to_str().unwrap()
    );
    let start = Instant::now();
    let run = d
        .sigaudit()
        .arg("symbolize")
        .run_with_input(record.as_bytes())
        .code(0);
    assert!(start.elapsed() < Duration::from_secs(30), "{run}");
    let out = records(&run.stdout);
    assert_eq!(out.len(), 1, "{run}");
    assert!(out[0]["backtrace"][0].get("function").is_none(), "{run}");
}
