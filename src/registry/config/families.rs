//! `[[source.headers]]`: a source's declared header families in TOML, read
//! into [`HeaderFamily`] values and written back.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{at, format_duration, parse_duration, spanned};
use crate::signal::{HeaderFamily, ResetKind, Unit};
use crate::Error;

/// One `[[source.headers]]` table.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FamilyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remaining: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reset: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reset_unit: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reset_kind: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<Spanned<String>>,
}

const KINDS: [(&str, ResetKind); 5] = [
    ("by-size", ResetKind::BySize),
    ("delta", ResetKind::Delta),
    ("epoch", ResetKind::Epoch),
    ("go-duration", ResetKind::GoDuration),
    ("timestamp", ResetKind::Timestamp),
];

/// A `[[source.headers]]` table as a family, checked, with errors at the
/// line and key to change.
pub(super) fn family_from(text: &str, c: FamilyConfig) -> Result<HeaderFamily, Error> {
    let mut f = HeaderFamily::new();
    let names = [
        ("limit", &c.limit),
        ("remaining", &c.remaining),
        ("used", &c.used),
        ("reset", &c.reset),
        ("retry_after", &c.retry_after),
    ];
    for (key, value) in names {
        let Some(v) = value else { continue };
        let name = v.get_ref().clone();
        f = match key {
            "limit" => f.limit(name),
            "remaining" => f.remaining(name),
            "used" => f.used(name),
            "reset" => f.reset(name),
            _ => f.retry_after(name),
        };
    }
    if let Some(u) = &c.reset_unit {
        f = f.reset_unit(match u.get_ref().as_str() {
            "s" => Unit::Seconds,
            "ms" => Unit::Milliseconds,
            other => {
                return Err(Error::config(
                    at(text, u.span(), "reset_unit"),
                    format!("`{other}` is not a unit; write \"s\" or \"ms\""),
                ))
            }
        });
    }
    if let Some(k) = &c.reset_kind {
        let kind = KINDS.iter().find(|(n, _)| n == k.get_ref());
        f = f.reset_kind(match kind {
            Some((_, kind)) => *kind,
            None => {
                let known: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
                return Err(Error::config(
                    at(text, k.span(), "reset_kind"),
                    format!(
                        "`{}` is not a kind; write one of {}",
                        k.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
        });
    }
    if let Some(w) = &c.window {
        f = f.window(parse_duration(w.get_ref()).ok_or_else(|| {
            Error::config(
                at(text, w.span(), "window"),
                format!(
                    "`{}` is not a duration; write \"250ms\", \"10s\", \"2min\" or \"1h\"",
                    w.get_ref()
                ),
            )
        })?);
    }
    if let Some(reason) = f.validate().err().as_ref().and_then(Error::reason) {
        // At the (last) key whose name the reason quotes, else the first.
        let others = [("window", &c.window), ("reset_unit", &c.reset_unit)];
        let keyed = names
            .iter()
            .chain(others.iter())
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)));
        let quoted = |v: &Spanned<String>| reason.contains(&format!("`{}`", v.get_ref()));
        let (key, span) = match keyed
            .clone()
            .rfind(|(_, v)| quoted(v))
            .or(keyed.clone().next())
        {
            Some((k, v)) => (k, v.span()),
            None => ("headers", 0..0),
        };
        return Err(Error::config(at(text, span, key), reason));
    }
    Ok(f)
}

pub(super) fn family_config(f: &HeaderFamily) -> FamilyConfig {
    let name =
        |n: &Option<std::borrow::Cow<'static, str>>| n.as_ref().map(|n| spanned(n.to_string()));
    FamilyConfig {
        limit: name(&f.limit),
        remaining: name(&f.remaining),
        used: name(&f.used),
        reset: name(&f.reset),
        retry_after: name(&f.retry_after),
        reset_unit: (f.reset_unit == Unit::Milliseconds).then(|| spanned("ms".to_string())),
        reset_kind: KINDS
            .iter()
            .find(|(_, k)| *k == f.reset_kind && *k != ResetKind::BySize)
            .map(|(n, _)| spanned(n.to_string())),
        window: f.window.map(|w| spanned(format_duration(w))),
    }
}
