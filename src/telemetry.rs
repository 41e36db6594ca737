//! Log output: readable text by default, JSON lines with `log.formatter: json`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global logger. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(settings: &LogSettings) {
    let mut default = format!("{level},sqlx=warn", level = settings.level);
    if !settings.access_log {
        default.push_str(",ferry::access=off");
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if settings.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}
