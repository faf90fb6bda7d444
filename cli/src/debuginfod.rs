//! Debug files from debuginfod servers, by build ID, through the system's own client library,
//! elfutils' `libdebuginfod.so.1`: the one gdb, perf, valgrind and systemd-coredump use. It reads
//! `DEBUGINFOD_URLS` (servers, space-separated), `DEBUGINFOD_TIMEOUT`, `DEBUGINFOD_CACHE_PATH`
//! (else `$XDG_CACHE_HOME/debuginfod_client`, else `~/.cache/debuginfod_client`) and the rest of
//! its variables itself, and keeps its cache its own way (a miss is remembered for
//! `cache_miss_s`, old files are cleaned), so the cache is shared with those tools exactly.
//!
//! The library is loaded at run time (`dlopen`), only when `DEBUGINFOD_URLS` is set: the command
//! needs nothing more than libc to start, so the two files of an install still run on a host
//! without it, and say what to install when it is asked for and missing.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_long, c_void};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

const SONAME: &CStr = c"libdebuginfod.so.1";

type Begin = unsafe extern "C" fn() -> *mut c_void;
type End = unsafe extern "C" fn(*mut c_void);
type FindDebuginfo = unsafe extern "C" fn(*mut c_void, *const u8, c_int, *mut *mut c_char) -> c_int;
type Progress = unsafe extern "C" fn(*mut c_void, c_long, c_long) -> c_int;
type SetProgress = unsafe extern "C" fn(*mut c_void, Option<Progress>);
type GetUrl = unsafe extern "C" fn(*mut c_void) -> *const c_char;

/// The functions used from libdebuginfod.
struct Library {
    begin: Begin,
    end: End,
    find_debuginfo: FindDebuginfo,
    set_progress: SetProgress,
    /// Since elfutils 0.179.
    get_url: Option<GetUrl>,
}

impl Library {
    fn load() -> Result<Library, String> {
        // SAFETY: dlopen with a NUL-terminated name; the handle is kept for the process's life.
        let handle = unsafe { libc::dlopen(SONAME.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(dlerror());
        }
        let sym = |name: &CStr| -> Result<*mut c_void, String> {
            // SAFETY: a live handle and a NUL-terminated name.
            let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
            if p.is_null() { Err(dlerror()) } else { Ok(p) }
        };
        // SAFETY: each symbol is the libdebuginfod function of that name, whose C prototype (in
        // elfutils/debuginfod.h) the type matches.
        unsafe {
            Ok(Library {
                begin: std::mem::transmute::<*mut c_void, Begin>(sym(c"debuginfod_begin")?),
                end: std::mem::transmute::<*mut c_void, End>(sym(c"debuginfod_end")?),
                find_debuginfo: std::mem::transmute::<*mut c_void, FindDebuginfo>(sym(
                    c"debuginfod_find_debuginfo",
                )?),
                set_progress: std::mem::transmute::<*mut c_void, SetProgress>(sym(
                    c"debuginfod_set_progressfn",
                )?),
                get_url: sym(c"debuginfod_get_url")
                    .ok()
                    .map(|p| std::mem::transmute::<*mut c_void, GetUrl>(p)),
            })
        }
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message owned by libc.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// Set by the progress callback: data came from a server during the current lookup (a cache
/// hit makes no transfer, and so no call).
static TRANSFERRED: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn on_progress(_client: *mut c_void, _done: c_long, _total: c_long) -> c_int {
    TRANSFERRED.store(true, Ordering::Relaxed);
    0
}

/// Why a lookup found nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No server has it (or a miss for it is still remembered in the cache).
    NotFound,
    /// The servers could not be reached or did not answer in time: later lookups are not tried.
    Unreachable(String),
    /// Any other error, said once.
    Other(String),
}

/// A debuginfod client for one run of the command: every build ID is asked for at most once.
pub struct Client {
    urls: String,
    library: Result<Library, String>,
    /// Set after a failure to reach the servers; later lookups fail at once with it.
    unreachable: Option<String>,
    asked: HashMap<String, Result<PathBuf, Failure>>,
    /// Say each download on stderr (when it is a terminal).
    announce: bool,
}

impl Client {
    /// A client when `DEBUGINFOD_URLS` names at least one server.
    pub fn from_env() -> Option<Client> {
        let urls = std::env::var("DEBUGINFOD_URLS").ok()?;
        urls.split_ascii_whitespace().next()?;
        let library = Library::load().map_err(|e| {
            format!(
                "DEBUGINFOD_URLS is set, but elfutils' debuginfod client library {} cannot be \
                 loaded ({e}): install it (Debian and Ubuntu: libdebuginfod1; Fedora: \
                 elfutils-debuginfod-client)",
                SONAME.to_string_lossy()
            )
        });
        if let Err(e) = &library {
            eprintln!("sigaudit: {e}");
        }
        Some(Client {
            urls,
            library,
            unreachable: None,
            asked: HashMap::new(),
            announce: std::io::stderr().is_terminal(),
        })
    }

    /// The debug file for `build_id` (lowercase hex) of `module` (named in messages), from the
    /// cache or a server. Every failure is said once on stderr.
    pub fn debuginfo(&mut self, build_id: &str, module: &str) -> Result<PathBuf, Failure> {
        if let Some(known) = self.asked.get(build_id) {
            return known.clone();
        }
        // Said once already: the library is missing, or the servers cannot be reached.
        if let Err(e) = &self.library {
            return Err(Failure::Unreachable(e.clone()));
        }
        if let Some(why) = &self.unreachable {
            return Err(Failure::Unreachable(why.clone()));
        }
        let result = self.fetch(build_id, module);
        if let Err(failure) = &result {
            let name = crate::record::basename(module);
            let short = build_id.get(..12).unwrap_or(build_id);
            match failure {
                Failure::NotFound => eprintln!(
                    "sigaudit: no debug info for {name} (build ID {short}...): not found on \
                     DEBUGINFOD_URLS={}",
                    self.urls
                ),
                Failure::Unreachable(why) => eprintln!(
                    "sigaudit: no debug info for {name} (build ID {short}...): {why}; no more \
                     lookups in this run"
                ),
                Failure::Other(why) => {
                    eprintln!("sigaudit: no debug info for {name} (build ID {short}...): {why}")
                }
            }
        }
        self.asked.insert(build_id.to_string(), result.clone());
        result
    }

    fn fetch(&mut self, build_id: &str, module: &str) -> Result<PathBuf, Failure> {
        let lib = match &self.library {
            Ok(lib) => lib,
            Err(e) => return Err(Failure::Unreachable(e.clone())),
        };
        let Ok(id) = CString::new(build_id) else {
            return Err(Failure::Other("the build ID is not text".into()));
        };
        // SAFETY: begin has no preconditions; a null result is handled.
        let client = unsafe { (lib.begin)() };
        if client.is_null() {
            return Err(Failure::Other(format!(
                "debuginfod_begin failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        TRANSFERRED.store(false, Ordering::Relaxed);
        let mut path: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live client; the ID is a NUL-terminated hex string (length 0 says so); `path`
        // receives a malloc'd string or stays null.
        let fd = unsafe {
            (lib.set_progress)(client, Some(on_progress));
            (lib.find_debuginfo)(client, id.as_ptr() as *const u8, 0, &mut path)
        };
        let url = lib
            .get_url
            // SAFETY: a live client; the string is owned by it and copied before `end`.
            .map(|get| unsafe { get(client) })
            .filter(|p| !p.is_null())
            // SAFETY: non-null, NUL-terminated, owned by the client.
            .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned());
        let found = (!path.is_null()).then(|| {
            // SAFETY: set by the library to a NUL-terminated malloc'd string, freed right after.
            let p = unsafe { CStr::from_ptr(path) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: as above, allocated with malloc by the library.
            unsafe { libc::free(path as *mut c_void) };
            PathBuf::from(p)
        });
        let size = if fd >= 0 {
            // SAFETY: an open descriptor the library returned to us, closed here.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let size = (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_size as u64);
            // SAFETY: as above.
            unsafe { libc::close(fd) };
            size
        } else {
            None
        };
        // SAFETY: the client was begun above and is not used after this.
        unsafe { (lib.end)(client) };
        if fd < 0 {
            let failure = self.failure(-fd);
            if let Failure::Unreachable(why) = &failure {
                self.unreachable = Some(why.clone());
            }
            return Err(failure);
        }
        let path = found.ok_or_else(|| Failure::Other("the client gave no path".into()))?;
        if self.announce && TRANSFERRED.load(Ordering::Relaxed) {
            eprintln!(
                "sigaudit: downloaded debug info for {} (build ID {}...), {}, from {}",
                crate::record::basename(module),
                build_id.get(..12).unwrap_or(build_id),
                size.map(human_size)
                    .unwrap_or_else(|| "size unknown".into()),
                url.unwrap_or_else(|| self.urls.clone())
            );
        }
        Ok(path)
    }

    /// What an error code from `debuginfod_find_debuginfo` means, for people.
    fn failure(&self, errno: c_int) -> Failure {
        let urls = &self.urls;
        match errno {
            libc::ENOENT => Failure::NotFound,
            libc::ECONNREFUSED => Failure::Unreachable(format!(
                "the debuginfod server is down: connection refused (DEBUGINFOD_URLS={urls})"
            )),
            libc::ETIME | libc::ETIMEDOUT => Failure::Unreachable(format!(
                "the debuginfod server did not answer within DEBUGINFOD_TIMEOUT={} seconds \
                 (DEBUGINFOD_URLS={urls})",
                std::env::var("DEBUGINFOD_TIMEOUT").unwrap_or_else(|_| "90".into())
            )),
            libc::EHOSTUNREACH => Failure::Unreachable(format!(
                "the debuginfod server's host name cannot be resolved (DEBUGINFOD_URLS={urls})"
            )),
            libc::ENETUNREACH | libc::ECONNRESET => Failure::Unreachable(format!(
                "the debuginfod server cannot be reached: {} (DEBUGINFOD_URLS={urls})",
                std::io::Error::from_raw_os_error(errno)
            )),
            e => Failure::Other(format!(
                "the debuginfod client failed: {} (DEBUGINFOD_URLS={urls})",
                std::io::Error::from_raw_os_error(e)
            )),
        }
    }
}

/// `5968` to `5.8 KiB`.
fn human_size(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(5968), "5.8 KiB");
        assert_eq!(human_size(21 * 1024 * 1024 + 1), "21.0 MiB");
    }
}
