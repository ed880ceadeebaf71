//! Logs on stderr, as text (the default) or as one JSON object per line with the fields etcd's
//! zap logger writes (`level`, `ts`, `caller`, `msg`, then the event's own fields), so log
//! pipelines built for etcd read MetaStore's too.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "console" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("--log-format {other:?}: expected text or json")),
        }
    }
}

/// Installs the process's logger; `RUST_LOG` wins over `level`. With a `tracer`, MetaStore's
/// own spans also go to OpenTelemetry (whatever the log filter says).
pub fn init(level: &str, format: LogFormat, tracer: Option<opentelemetry_sdk::trace::Tracer>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // openraft logs every election step at info; its warnings (a peer unreachable, a
        // snapshot or append that timed out) are what an operator needs to see when a member
        // does not catch up, so they stay on unless asked otherwise (RUST_LOG or an explicit
        // openraft directive).
        let spec = if level.contains("openraft") {
            level.to_string()
        } else {
            format!("{level},openraft=warn,openraft::core::heartbeat=error")
        };
        tracing_subscriber::EnvFilter::new(spec)
    });
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.event_format(ZapJson).with_filter(filter).boxed(),
    };
    let traces = tracer.map(|t| {
        let ours = tracing_subscriber::filter::Targets::new()
            .with_target("metastore_cli", tracing::Level::INFO)
            .with_target("metastore_gateway", tracing::Level::INFO)
            .with_target("metastore_storaged", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_filter(ours)
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
}

/// One JSON object per event: `{"level":"info","ts":"...","caller":"target","msg":"...",...}`.
pub struct ZapJson;

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        writeln!(writer, "{}", zap_line(event))
    }
}

fn zap_line(event: &tracing::Event<'_>) -> String {
    let meta = event.metadata();
    let mut ts = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts));
    let mut fields = Fields::default();
    event.record(&mut fields);
    // zap's order: the four fixed fields first, then the event's own.
    let json = |v: serde_json::Value| v.to_string();
    let mut line = format!(
        "{{\"level\":{},\"ts\":{},\"caller\":{},\"msg\":{}",
        json(meta.level().as_str().to_ascii_lowercase().into()),
        json(ts.into()),
        json(caller(meta).into()),
        json(fields.message.unwrap_or_default().into()),
    );
    let mut seen = vec!["level", "ts", "caller", "msg"];
    for (k, v) in &fields.rest {
        if seen.contains(&k.as_str()) {
            continue;
        }
        seen.push(k);
        line.push(',');
        line.push_str(&json(k.as_str().into()));
        line.push(':');
        line.push_str(&json(v.clone()));
    }
    line.push('}');
    line
}

/// `file:line` where the event was logged, else its target.
fn caller(meta: &tracing::Metadata<'_>) -> String {
    match (meta.file(), meta.line()) {
        (Some(file), Some(line)) => format!("{file}:{line}"),
        _ => meta.target().to_string(),
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(String, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.push((field.name().to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_zaps_fields() {
        let buf = Buffer::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .event_format(ZapJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(member = "s1", applied = 7u64, ok = true, "slow apply \"x\"");
        });
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf8");
        assert_eq!(text.lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "slow apply \"x\"");
        assert_eq!(v["member"], "s1");
        assert_eq!(v["applied"], 7);
        assert_eq!(v["ok"], true);
        assert!(
            v["caller"]
                .as_str()
                .expect("caller")
                .contains("logging.rs:")
        );
        assert!(v["ts"].as_str().expect("ts").starts_with("20"), "{v}");
        assert!(
            text.starts_with(r#"{"level":"warn","ts":""#),
            "zap's order: {text}"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
