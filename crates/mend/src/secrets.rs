//! The secret values this process knows (params declared `secret = true`
//! of the runbook it loaded, or of the run it reads from the journal), and
//! the `println!`/`eprintln!`/`print!` the CLI's renderers use instead of
//! std's: every line they print goes through [`mask`], so a secret
//! interpolated into a command, a path or a step's words prints as `***`.

use std::sync::RwLock;

use mend_journal::Redact;

static SECRETS: RwLock<Option<Redact>> = RwLock::new(None);

/// Adds secret values to mask from now on.
pub fn add(r: &Redact) {
    if r.is_empty() {
        return;
    }
    let mut g = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(Redact::default).extend(r);
}

/// `s` with every known secret value replaced by `***`.
pub fn mask(s: &str) -> std::borrow::Cow<'_, str> {
    let g = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    match g.as_ref() {
        Some(r) if !r.is_empty() => r.text(s).into(),
        _ => s.into(),
    }
}

/// Masks every string of a JSON value in place.
pub fn mask_json(v: &mut serde_json::Value) {
    let g = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = g.as_ref() {
        r.json(v);
    }
}

macro_rules! println {
    () => { ::std::println!() };
    ($($t:tt)*) => {{
        let s = ::std::format!($($t)*);
        ::std::println!("{}", $crate::secrets::mask(&s))
    }};
}

macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($t:tt)*) => {{
        let s = ::std::format!($($t)*);
        ::std::eprintln!("{}", $crate::secrets::mask(&s))
    }};
}

macro_rules! print {
    ($($t:tt)*) => {{
        let s = ::std::format!($($t)*);
        ::std::print!("{}", $crate::secrets::mask(&s))
    }};
}

pub(crate) use {eprintln, print, println};
