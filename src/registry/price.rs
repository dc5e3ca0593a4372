//! [`Price`]: how many tokens a request takes from its source, by method
//! and path, the way an API prices its calls (GitHub's secondary limit
//! counts a GET as 1 point and a write as 5).

use http::Method;

use crate::Policy;

/// What a request costs in tokens: a default, a cost per method, and a cost
/// per path prefix (on segment boundaries). The longest matching path rule
/// wins, then the method's cost, then the default. A request's tokens are
/// the weight it asked for (1 for an HTTP request) times its price.
///
/// ```
/// use http::Method;
/// use tollgate::{Policy, Price, Source};
///
/// // GitHub's secondary limit: 900 points a minute, a write costs 5.
/// let github = Source::new("github")
///     .limit(Policy::window(900, std::time::Duration::from_secs(60))?.burst(5.0)?)
///     .price(Price::new().writes(5.0))
///     .host("api.github.com");
/// # let _ = github;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Price {
    default: f64,
    methods: Vec<(Method, f64)>,
    paths: Vec<(String, f64)>,
}

impl Default for Price {
    fn default() -> Self {
        Price::new()
    }
}

impl Price {
    /// Every request costs 1.
    pub fn new() -> Self {
        Price {
            default: 1.0,
            methods: Vec::new(),
            paths: Vec::new(),
        }
    }

    /// What a request no other rule prices costs.
    pub fn default_cost(mut self, tokens: f64) -> Self {
        self.default = tokens;
        self
    }

    /// What a request with `method` costs.
    pub fn method(mut self, method: Method, tokens: f64) -> Self {
        self.methods.retain(|(m, _)| *m != method);
        self.methods.push((method, tokens));
        self
    }

    /// What a write costs: `POST`, `PUT`, `PATCH` and `DELETE`.
    pub fn writes(self, tokens: f64) -> Self {
        [Method::POST, Method::PUT, Method::PATCH, Method::DELETE]
            .into_iter()
            .fold(self, |p, m| p.method(m, tokens))
    }

    /// What a request under path `prefix` costs, whatever its method.
    pub fn path(mut self, prefix: impl Into<String>, tokens: f64) -> Self {
        self.paths.push((prefix.into(), tokens));
        self
    }

    /// The cost of a request with `method` (if known) to `path`.
    pub fn of(&self, method: Option<&Method>, path: &str) -> f64 {
        let by_path = self
            .paths
            .iter()
            .filter(|(prefix, _)| under(path, prefix))
            .max_by_key(|(prefix, _)| prefix.len());
        if let Some((_, tokens)) = by_path {
            return *tokens;
        }
        method
            .and_then(|m| self.methods.iter().find(|(mm, _)| mm == m))
            .map_or(self.default, |(_, t)| *t)
    }

    /// Every cost is finite, above zero, and within every limit's capacity
    /// (a cost no limit can ever hold would refuse its requests forever).
    pub(crate) fn check(&self, limits: &[Policy]) -> Result<(), String> {
        let costs = std::iter::once(self.default)
            .chain(self.methods.iter().map(|(_, t)| *t))
            .chain(self.paths.iter().map(|(_, t)| *t));
        for cost in costs {
            if !(cost.is_finite() && cost > 0.0) {
                return Err(format!(
                    "a price of {cost} tokens: give a finite number above zero"
                ));
            }
            if let Some(p) = limits.iter().find(|p| cost > p.capacity()) {
                return Err(format!(
                    "a price of {cost} tokens exceeds the burst of limit `{p}`; raise its burst to at least {cost}"
                ));
            }
        }
        Ok(())
    }
}

/// Whether `path` lies under `prefix` on a segment boundary.
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}
