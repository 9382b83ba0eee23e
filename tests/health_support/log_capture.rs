//! What the checkers log, kept for the tests: a global tracing subscriber whose layer keeps
//! every event as one line ([`logged`]), and the lines about one service ([`lines_of`]).

use std::sync::{Mutex, OnceLock};

/// The events logged by any thread, as `level message field=value ...` lines.
pub fn logged() -> &'static Mutex<Vec<String>> {
    static LOGGED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static INSTALL: OnceLock<()> = OnceLock::new();
    let logged = LOGGED.get_or_init(|| Mutex::new(Vec::new()));
    INSTALL.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    logged
}

/// Logged lines that mention `service`.
pub fn lines_of(service: &str) -> Vec<String> {
    let needle = format!("service={service} ");
    logged()
        .lock()
        .expect("log lock")
        .iter()
        .filter(|l| l.contains(&needle))
        .cloned()
        .collect()
}

/// A tracing layer that keeps every event as one line, for [`logged`].
struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.push_str(&format!(" {value:?}"));
                } else {
                    self.0.push_str(&format!(" {}={value:?}", field.name()));
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!(" {}={value}", field.name()));
            }
        }
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        line.0.push(' ');
        if let Ok(mut logged) = logged().lock() {
            logged.push(line.0);
        }
    }
}
