//! The `/metrics` exposition, encoded by `prometheus-client` (the official Rust client) in
//! the OpenMetrics text format.
//!
//! Owns [`Exposition`]: the families one scrape reports, each with its name, help, type and
//! samples, collected from a snapshot the caller took, and their encoding. Must not read the
//! node or decide a value: the modules that own a figure add it (`api::metrics`,
//! `api::keys`, `api::limits`, `api::health`, `api::reports`).
//!
//! The samples are the ones the hand-written 0.0.4 text had (same names, labels and values);
//! what OpenMetrics changes is the header of a counter family (`# TYPE shoal_x counter` for
//! the samples `shoal_x_total`) and the closing `# EOF`. Counters are added under their
//! sample name (`..._total`), so the name in the source is the one an operator greps for.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    counter: bool,
    /// The value of an unlabelled fractional gauge (`gauge_f64`), instead of `samples`.
    fraction: Option<f64>,
    /// `(label key, label value)` pairs (empty for an unlabelled sample) and the value.
    samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

/// The families of one scrape, in the order they were added.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    /// One unlabelled counter; `name` is its sample name and ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, true).push((Vec::new(), value));
    }

    /// One unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, false).push((Vec::new(), value));
    }

    /// One unlabelled gauge with a fractional value (seconds, ratios).
    pub fn gauge_f64(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help, false);
        if let Some(f) = self.families.last_mut() {
            f.fraction = Some(value);
        }
    }

    /// A counter family with one label (`key`), one sample per value of it.
    pub fn counters<V: Into<String>>(
        &mut self,
        name: &str,
        help: &str,
        key: &'static str,
        samples: impl IntoIterator<Item = (V, u64)>,
    ) {
        self.labelled(
            name,
            help,
            true,
            samples.into_iter().map(|(v, n)| (vec![(key, v.into())], n)),
        );
    }

    /// A gauge family with one label (`key`), one sample per value of it.
    pub fn gauges<V: Into<String>>(
        &mut self,
        name: &str,
        help: &str,
        key: &'static str,
        samples: impl IntoIterator<Item = (V, u64)>,
    ) {
        self.labelled(
            name,
            help,
            false,
            samples.into_iter().map(|(v, n)| (vec![(key, v.into())], n)),
        );
    }

    /// A family whose samples carry any labels.
    pub fn labelled(
        &mut self,
        name: &str,
        help: &str,
        counter: bool,
        samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
    ) {
        self.family(name, help, counter)
            .extend(samples.into_iter().map(|(labels, v)| {
                let labels = labels.into_iter().map(|(k, v)| (k, escape(&v))).collect();
                (labels, v)
            }));
    }

    fn family(
        &mut self,
        name: &str,
        help: &str,
        counter: bool,
    ) -> &mut Vec<(Vec<(&'static str, String)>, u64)> {
        let name = if counter {
            name.strip_suffix("_total").unwrap_or(name)
        } else {
            name
        };
        self.families.push(Family {
            name: name.to_string(),
            help: help.to_string(),
            counter,
            fraction: None,
            samples: Vec::new(),
        });
        &mut self.families.last_mut().expect("just pushed").samples
    }

    /// The OpenMetrics text.
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail, and every family was checked when added.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let kind = if f.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut metric = encoder.encode_descriptor(&f.name, &f.help, None, kind)?;
            if let Some(v) = f.fraction {
                ConstGauge::new(v).encode(metric)?;
                continue;
            }
            for (labels, value) in &f.samples {
                if labels.is_empty() {
                    // An unlabelled family has its one sample (see `counter`, `gauge`).
                    encode_one(metric, f.counter, *value)?;
                    break;
                }
                let sample = metric.encode_family(labels)?;
                if f.counter {
                    ConstCounter::new(*value).encode(sample)?;
                } else {
                    ConstGauge::new(gauge(*value)).encode(sample)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_one(
    metric: prometheus_client::encoding::MetricEncoder<'_>,
    counter: bool,
    value: u64,
) -> Result<(), std::fmt::Error> {
    if counter {
        ConstCounter::new(value).encode(metric)
    } else {
        ConstGauge::new(gauge(value)).encode(metric)
    }
}

/// Escapes a label value as the text format wants it: `prometheus-client` writes label values
/// as given (names are validated at decode and never hold these, but a value must never be
/// able to break the exposition).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_their_names_and_labels() {
        let mut e = Exposition::default();
        e.counter("shoal_x_total", "Xs seen.", 7);
        e.gauge("shoal_y", "Ys now.", 3);
        e.gauge_f64("shoal_z_seconds", "Zs.", 1.25);
        e.gauges(
            "shoal_m",
            "Ms by status.",
            "status",
            [("alive", 2), ("down", 0)],
        );
        e.counters(
            "shoal_d_total",
            "Drops by reason.",
            "reason",
            [("bad \"q\"", 1)],
        );
        let text = e.encode();
        for want in [
            "# HELP shoal_x Xs seen.\n",
            "# TYPE shoal_x counter\n",
            "shoal_x_total 7\n",
            "# TYPE shoal_y gauge\n",
            "shoal_y 3\n",
            "shoal_z_seconds 1.25\n",
            "shoal_m{status=\"alive\"} 2\n",
            "shoal_m{status=\"down\"} 0\n",
            "shoal_d_total{reason=\"bad \\\"q\\\"\"} 1\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
