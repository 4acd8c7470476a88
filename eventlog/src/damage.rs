//! Damaged pages: some damage to a redb file makes redb panic instead of answering an error.
//!
//! Invariant: every call into redb that reads a file whose pages may be damaged (opening a log,
//! scanning one) goes through [`contained`], so such damage becomes an error that names the
//! file — a process never dies of a damaged log, and the terminal shows the answer, not a
//! panic's backtrace.

/// Runs `f`; a panic inside becomes `Err` with its message (not printed).
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    outcome.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown".into())
    })
}

/// What to tell the operator about a damaged file.
pub(crate) fn advice(why: &str) -> String {
    format!(
        "its pages are damaged (the storage engine gave up: {why}); restore the log from a copy, \
         or rebuild it from an export (`streamfleet replay verify --file` names where it breaks)"
    )
}
