//! A registry from TOML (feature `serde`): sources, their limits and rules,
//! and the unknown-host mode, with errors that name the line and the key.
//!
//! ```toml
//! unknown_hosts = "pass-through"      # or "reject", or { default = "name" }
//! max_hosts = 10000                   # per per-host source
//!
//! [[source]]
//! preset = "musicbrainz"              # start from a preset (optional)
//!
//! [[source]]
//! name = "jikan"
//! limits = ["3/s", "60/min burst 3 window"]
//! hosts = ["api.jikan.moe"]
//! path = "/v4"                        # optional path prefix
//! scope = "per-source"                # or "per-host"
//! max_in_flight = 2                   # optional
//! on_limit = "wait"                   # or "reject"
//! max_wait = "30s"                    # with "wait": refuse beyond this
//!
//! [[source]]
//! name = "elsewhere"                  # hosts nobody configured (see `tollgate::learn`)
//! scope = "per-host"
//! learn = true                        # adopt the quotas servers announce
//! adaptive = true                     # and find a rate from bare 429s (implies learn)
//! learn_expiry = "10min"              # a quota not announced again this long is dropped
//!
//! [[source.headers]]                  # a header family of this source
//! limit = "x-foo-limit"               # each name optional, lowercase
//! remaining = "x-foo-left"
//! used = "x-foo-used"
//! reset = "x-foo-reset"
//! retry_after = "x-foo-retry-after"
//! reset_unit = "ms"                   # or "s" (the default)
//! reset_kind = "delta"                # or "epoch", "by-size" (the default),
//!                                     # "go-duration", "timestamp"
//! window = "1s"                       # the limit's window (optional)
//! ```
//!
//! A `[[source]]` with a `preset` takes the preset's name, limits and hosts;
//! any key it also sets replaces the preset's value. Each `[[source.headers]]`
//! declares a [`HeaderFamily`](crate::signal::HeaderFamily) in the source's
//! signal settings (see
//! [`SignalConfig::with_family`](crate::SignalConfig::with_family)): it is
//! read on the responses to the requests that source routes.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{rules, OnLimit, RegistryBuilder, Scope, Source, UnknownHost};
use crate::{presets, Error, Policy, Registry, SignalConfig};
use families::{family_config, family_from, FamilyConfig};

mod families;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unknown_hosts: Option<Spanned<UnknownHostConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_hosts: Option<Spanned<usize>>,
    #[serde(default, rename = "source")]
    sources: Vec<SourceTable>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum UnknownHostConfig {
    Mode(String),
    Default { default: String },
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SourceTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preset: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limits: Option<Vec<Spanned<Policy>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hosts: Option<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<Spanned<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_limit: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learn: Option<Spanned<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    adaptive: Option<Spanned<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learn_expiry: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_wait: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<FamilyConfig>,
}

/// `line N, key K` for a span of `text`.
fn at(text: &str, span: Range<usize>, key: &str) -> String {
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!("line {line}, key `{key}`")
}

fn spanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

fn preset(name: &str) -> Option<Source> {
    Some(match name {
        "musicbrainz" => presets::musicbrainz(),
        "discogs_authenticated" => presets::discogs_authenticated(),
        "discogs_unauthenticated" => presets::discogs_unauthenticated(),
        "acoustid" => presets::acoustid(),
        "anilist" => presets::anilist(),
        "jikan" => presets::jikan(),
        "mangadex" => presets::mangadex(),
        "github" => presets::github(),
        "github_unauthenticated" => presets::github_unauthenticated(),
        "github_search" => presets::github_search(),
        "github_search_unauthenticated" => presets::github_search_unauthenticated(),
        _ => return None,
    })
}

const PRESETS: &str = "musicbrainz, discogs_authenticated, discogs_unauthenticated, acoustid, \
                       anilist, jikan, mangadex, github, github_unauthenticated, github_search, \
                       github_search_unauthenticated";

/// Parses `"250ms"`, `"10s"`, `"2min"`, `"1h"`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

fn format_duration(d: Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) && !d.as_millis().is_multiple_of(1000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The learning settings of a `[[source]]`: `learn`, `adaptive` (which
/// implies learning) and `learn_expiry`.
fn learn_from(text: &str, c: &SourceTable) -> Result<Option<crate::learn::Learn>, Error> {
    let learn = c.learn.as_ref().map(|l| (*l.get_ref(), l.span()));
    let adaptive = c.adaptive.as_ref().is_some_and(|a| *a.get_ref());
    if let (Some((false, span)), true) = (&learn, adaptive) {
        return Err(Error::config(
            at(text, span.clone(), "learn"),
            "`adaptive = true` learns: drop `learn = false`, or set `adaptive = false`",
        ));
    }
    let on = adaptive || learn.as_ref().is_some_and(|(l, _)| *l);
    let expiry = match &c.learn_expiry {
        None => None,
        Some(e) if !on => {
            return Err(Error::config(
                at(text, e.span(), "learn_expiry"),
                "`learn_expiry` goes with `learn = true` or `adaptive = true`",
            ))
        }
        Some(e) => Some(
            parse_duration(e.get_ref())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::config(
                        at(text, e.span(), "learn_expiry"),
                        format!(
                            "`{}` is not a positive duration; write \"10min\", \"1h\" or \"90s\"",
                            e.get_ref()
                        ),
                    )
                })?,
        ),
    };
    if !on {
        return Ok(None);
    }
    let mut settings = crate::learn::Learn::default().adaptive(adaptive);
    if let Some(d) = expiry {
        settings = settings.expire_after(d);
    }
    Ok(Some(settings))
}

fn source_from(text: &str, c: SourceTable, index: usize) -> Result<Source, Error> {
    let learn = learn_from(text, &c)?;
    let mut source = match &c.preset {
        Some(p) => preset(p.get_ref()).ok_or_else(|| {
            Error::config(
                at(text, p.span(), "preset"),
                format!("unknown preset `{}`; known: {PRESETS}", p.get_ref()),
            )
        })?,
        None => match &c.name {
            Some(n) => Source::new(n.get_ref().as_str()),
            None => {
                return Err(Error::config(
                    format!("source #{}", index + 1),
                    "give the source a `name` (or a `preset`)",
                ))
            }
        },
    };
    if let Some(n) = c.name {
        source.name = n.into_inner();
    }
    if learn.is_some() {
        source.learn = learn;
    }
    if let Some(limits) = c.limits {
        source.limits = limits.into_iter().map(Spanned::into_inner).collect();
    }
    if let Some(hosts) = c.hosts {
        source.hosts.clear();
        for h in hosts {
            if let Err(e) = rules::parse_pattern(h.get_ref()) {
                return Err(e.relocate(|_| at(text, h.span(), "hosts")));
            }
            source.hosts.push(h.into_inner());
        }
    }
    if let Some(p) = c.path {
        if let Err(e) = rules::parse_path(p.get_ref()) {
            return Err(e.relocate(|_| at(text, p.span(), "path")));
        }
        source.path = Some(p.into_inner());
    }
    if let Some(s) = c.scope {
        source.scope = match s.get_ref().as_str() {
            "per-source" => Scope::PerSource,
            "per-host" => Scope::PerHost,
            other => {
                return Err(Error::config(
                    at(text, s.span(), "scope"),
                    format!("`{other}` is not a scope; write \"per-source\" or \"per-host\""),
                ))
            }
        };
    }
    if let Some(n) = c.max_in_flight {
        if *n.get_ref() == 0 {
            return Err(Error::config(
                at(text, n.span(), "max_in_flight"),
                "must be at least 1",
            ));
        }
        source.max_in_flight = Some(n.into_inner());
    }
    let max_wait = match c.max_wait {
        None => None,
        Some(w) => Some(parse_duration(w.get_ref()).ok_or_else(|| {
            Error::config(
                at(text, w.span(), "max_wait"),
                format!(
                    "`{}` is not a duration; write \"250ms\", \"10s\", \"2min\" or \"1h\"",
                    w.get_ref()
                ),
            )
        })?),
    };
    if !c.headers.is_empty() {
        let mut signals = source.signals.take().unwrap_or_default();
        for h in c.headers {
            signals = signals.with_family(family_from(text, h)?);
        }
        source.signals = Some(signals);
    }
    source.on_limit = match c
        .on_limit
        .as_ref()
        .map(|o| (o.get_ref().as_str(), o.span()))
    {
        None | Some(("wait", _)) => OnLimit::Wait { max_wait },
        Some(("reject", span)) => {
            if max_wait.is_some() {
                return Err(Error::config(
                    at(text, span, "on_limit"),
                    "`max_wait` goes with \"wait\", not \"reject\"",
                ));
            }
            OnLimit::Reject
        }
        Some((other, span)) => {
            return Err(Error::config(
                at(text, span, "on_limit"),
                format!("`{other}` is not a mode; write \"wait\" or \"reject\""),
            ))
        }
    };
    Ok(source)
}

impl RegistryBuilder {
    /// A builder from TOML text (see the [module docs](self) for the format);
    /// set a clock or add sources before [`build`](Self::build).
    pub fn from_toml(text: &str) -> Result<RegistryBuilder, Error> {
        let file: File = toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let line_start = text[..span.start.min(text.len())]
                        .rfind('\n')
                        .map_or(0, |i| i + 1);
                    let line = &text[line_start..];
                    let line = line.split('\n').next().unwrap_or("");
                    let key = line.split('=').next().unwrap_or("").trim();
                    if line.contains('=') && !key.is_empty() {
                        at(text, span, key)
                    } else {
                        let n = text[..span.start.min(text.len())].matches('\n').count() + 1;
                        format!("line {n}")
                    }
                }
                None => "the configuration".to_string(),
            };
            Error::config(location, e.message().trim().to_string())
        })?;
        let mut builder = Registry::builder();
        let mut seen: Vec<(String, Range<usize>)> = Vec::new();
        for (i, c) in file.sources.into_iter().enumerate() {
            let name_span = c
                .name
                .as_ref()
                .or(c.preset.as_ref())
                .map(|s| s.span())
                .unwrap_or(0..0);
            let source = source_from(text, c, i)?;
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == source.name) {
                let first_line = text[..first.start].matches('\n').count() + 1;
                return Err(Error::config(
                    at(text, name_span, "name"),
                    format!(
                        "source `{}` is already defined on line {first_line}",
                        source.name
                    ),
                ));
            }
            seen.push((source.name.clone(), name_span));
            builder = builder.source(source);
        }
        if let Some(u) = file.unknown_hosts {
            let span = u.span();
            builder = builder.unknown_hosts(match u.into_inner() {
                UnknownHostConfig::Mode(m) if m == "pass-through" => UnknownHost::PassThrough,
                UnknownHostConfig::Mode(m) if m == "reject" => UnknownHost::Reject,
                UnknownHostConfig::Mode(m) => {
                    return Err(Error::config(
                        at(text, span, "unknown_hosts"),
                        format!("`{m}` is not a mode; write \"pass-through\", \"reject\" or {{ default = \"source\" }}"),
                    ))
                }
                UnknownHostConfig::Default { default } => {
                    if !seen.iter().any(|(n, _)| *n == default) {
                        return Err(Error::config(
                            at(text, span, "unknown_hosts"),
                            format!("the default source `{default}` is not defined in this file"),
                        ));
                    }
                    UnknownHost::Default(default)
                }
            });
        }
        if let Some(m) = file.max_hosts {
            if *m.get_ref() == 0 {
                return Err(Error::config(
                    at(text, m.span(), "max_hosts"),
                    "keep at least one host per source",
                ));
            }
            builder = builder.max_hosts(m.into_inner());
        }
        Ok(builder)
    }

    /// This builder's configuration as TOML that [`from_toml`](Self::from_toml)
    /// reads back (the clock is not part of it).
    pub fn to_toml(&self) -> String {
        let file = File {
            unknown_hosts: Some(spanned(match &self.unknown {
                UnknownHost::PassThrough => UnknownHostConfig::Mode("pass-through".into()),
                UnknownHost::Reject => UnknownHostConfig::Mode("reject".into()),
                UnknownHost::Default(d) => UnknownHostConfig::Default { default: d.clone() },
            })),
            max_hosts: self.max_hosts.map(spanned),
            sources: self
                .sources
                .iter()
                .map(|s| SourceTable {
                    preset: None,
                    name: Some(spanned(s.name.clone())),
                    limits: Some(s.limits.iter().copied().map(spanned).collect()),
                    hosts: Some(s.hosts.iter().cloned().map(spanned).collect()),
                    path: s.path.clone().map(spanned),
                    scope: Some(spanned(
                        match s.scope {
                            Scope::PerSource => "per-source",
                            Scope::PerHost => "per-host",
                        }
                        .to_string(),
                    )),
                    max_in_flight: s.max_in_flight.map(spanned),
                    on_limit: Some(spanned(
                        match s.on_limit {
                            OnLimit::Wait { .. } => "wait",
                            OnLimit::Reject => "reject",
                        }
                        .to_string(),
                    )),
                    learn: s.learn.map(|_| spanned(true)),
                    adaptive: s.learn.filter(|l| l.adaptive).map(|_| spanned(true)),
                    learn_expiry: s
                        .learn
                        .filter(|l| l.expire_after != crate::learn::Learn::default().expire_after)
                        .map(|l| spanned(format_duration(l.expire_after))),
                    max_wait: match s.on_limit {
                        OnLimit::Wait { max_wait: Some(w) } => Some(spanned(format_duration(w))),
                        _ => None,
                    },
                    headers: s
                        .signals
                        .as_ref()
                        .map(SignalConfig::families)
                        .unwrap_or_default()
                        .iter()
                        .map(family_config)
                        .collect(),
                })
                .collect(),
        };
        toml::to_string(&file).unwrap_or_default()
    }

    /// The sources added so far.
    pub fn source_list(&self) -> &[Source] {
        &self.sources
    }
}

impl Registry {
    /// A registry from TOML text; see [`RegistryBuilder::from_toml`].
    pub fn from_toml(text: &str) -> Result<Registry, Error> {
        RegistryBuilder::from_toml(text)?.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10 days"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    }
}
