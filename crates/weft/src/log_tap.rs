//! The logging layer behind `/v1/agent/monitor`: events at or above the level some monitor asked for are handed
//! to the API's [`LogStream`], whatever level the agent itself logs at. With nobody listening, its level hint is
//! off, so it adds nothing to the log sites the agent's own level already disables.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, Layer};
use weft_http::monitor::{LogLine, LogStream};

fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Libraries as chatty as the agent's own log keeps them: warnings and errors only.
fn quiet(target: &str) -> bool {
    ["hyper", "reqwest", "openraft", "h2", "rustls"]
        .iter()
        .any(|t| target.starts_with(t))
}

pub struct LogTap(Arc<LogStream>);

impl LogTap {
    /// The layer with its filter, for the registry.
    pub fn layer<S>(stream: Arc<LogStream>) -> impl Layer<S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        LogTap(stream.clone()).with_filter(TapFilter(stream))
    }
}

/// Lets through what some monitor wants. Its level hint follows the monitors (off when none listens), and the
/// stream rebuilds the callsites' interest when it changes, so log sites below the agent's own level stay disabled
/// at no cost unless a monitor asks for them.
struct TapFilter(Arc<LogStream>);

impl<S> Filter<S> for TapFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        let level = level_number(meta.level());
        self.0.wants(level) && (level <= 2 || !quiet(meta.target()))
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match self.0.wanted() {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }
}

impl<S: Subscriber> Layer<S> for LogTap {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.publish(LogLine {
            level: level_number(meta.level()),
            time: SystemTime::now(),
            target: meta.target().to_string(),
            message: fields.message,
            fields: fields.others,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.others
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.others.push((field.name().to_string(), text));
        }
    }
}
