//! Access rules (`auth.access`, a Ferry extension): who may do what to which repositories.
//!
//! Each rule names `repositories` (glob patterns: `*` matches within one path component,
//! `**` across components, so `team/*` matches `team/app` but not `team/a/b`, and `team/**`
//! both), `users` (names, or `"*"` for every authenticated user), `anonymous: true` for
//! callers without credentials, and `actions` (`pull`, `push`, `delete`). A caller's rights on
//! a repository are the union of the actions of every rule that applies to it; a rule for
//! anonymous callers applies to authenticated users too.
//!
//! Without `auth.access`, authenticated users may do everything and anonymous callers
//! nothing (Distribution's behaviour).

use crate::registry::context::{Action, Caller};

/// A rule as configured, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// Glob patterns.
    pub repositories: Vec<String>,
    /// User names, or `*`.
    pub users: Vec<String>,
    /// Whether the rule applies to anonymous callers.
    pub anonymous: bool,
    /// `pull`, `push`, `delete`.
    pub actions: Vec<String>,
}

/// Why a rule is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// An action other than pull, push, delete.
    #[error("rule {rule}: unknown action {action:?} (expected pull, push or delete)")]
    UnknownAction {
        /// Index of the rule.
        rule: usize,
        /// The action.
        action: String,
    },
    /// A rule without repositories, actions, or anyone it applies to.
    #[error("rule {rule}: {what}")]
    Incomplete {
        /// Index of the rule.
        rule: usize,
        /// What is missing.
        what: &'static str,
    },
    /// A pattern that cannot match a repository name.
    #[error("rule {rule}: invalid repository pattern {pattern:?}: {why}")]
    Pattern {
        /// Index of the rule.
        rule: usize,
        /// The pattern.
        pattern: String,
        /// Why.
        why: &'static str,
    },
}

/// One validated rule.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    repositories: Vec<Glob>,
    users: Vec<String>,
    any_user: bool,
    anonymous: bool,
    actions: Vec<Action>,
}

/// The configured rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Validates the configured rules.
    pub fn new(specs: &[RuleSpec]) -> Result<Rules, RuleError> {
        let mut rules = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if spec.repositories.is_empty() {
                return Err(RuleError::Incomplete {
                    rule: i,
                    what: "no repositories (use \"**\" for all)",
                });
            }
            if spec.actions.is_empty() {
                return Err(RuleError::Incomplete {
                    rule: i,
                    what: "no actions (pull, push, delete)",
                });
            }
            if spec.users.is_empty() && !spec.anonymous {
                return Err(RuleError::Incomplete {
                    rule: i,
                    what: "applies to nobody: name users (or \"*\") or set anonymous: true",
                });
            }
            let actions = spec
                .actions
                .iter()
                .map(|a| match a.trim().to_ascii_lowercase().as_str() {
                    "pull" => Ok(Action::Pull),
                    "push" => Ok(Action::Push),
                    "delete" => Ok(Action::Delete),
                    _ => Err(RuleError::UnknownAction {
                        rule: i,
                        action: a.clone(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let repositories = spec
                .repositories
                .iter()
                .map(|p| {
                    Glob::new(p).map_err(|why| RuleError::Pattern {
                        rule: i,
                        pattern: p.clone(),
                        why,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule {
                repositories,
                any_user: spec.users.iter().any(|u| u == "*"),
                users: spec.users.iter().filter(|u| *u != "*").cloned().collect(),
                anonymous: spec.anonymous,
                actions,
            });
        }
        Ok(Rules { rules })
    }

    /// Whether `caller` may do `action` to `repository`.
    pub fn may(&self, caller: &Caller, repository: &str, action: Action) -> bool {
        self.rules.iter().any(|rule| {
            rule.actions.contains(&action)
                && rule.applies_to(caller)
                && rule.repositories.iter().any(|g| g.matches(repository))
        })
    }

    /// Whether any rule applies to `caller` at all (an anonymous caller with no rule of its
    /// own is asked to log in rather than shown an empty catalog).
    pub fn has_any_for(&self, caller: &Caller) -> bool {
        self.rules.iter().any(|rule| rule.applies_to(caller))
    }
}

impl Rule {
    fn applies_to(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Anonymous => self.anonymous,
            // What anonymous callers may do, logged-in users may do too.
            Caller::User(name) => {
                self.anonymous || self.any_user || self.users.iter().any(|u| u == name)
            }
        }
    }
}

/// A repository pattern: components separated by `/`; in a component `*` matches any run
/// of characters other than `/`; a component that is exactly `**` matches zero or more
/// whole components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// `**`.
    Any,
    /// A component pattern with `*` wildcards.
    Component(String),
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Result<Glob, &'static str> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err("empty");
        }
        let mut parts = Vec::new();
        for component in pattern.split('/') {
            if component.is_empty() {
                return Err("empty path component");
            }
            if component == "**" {
                parts.push(Part::Any);
            } else if component.contains("**") {
                return Err("** must be a whole path component");
            } else {
                parts.push(Part::Component(component.to_string()));
            }
        }
        Ok(Glob { parts })
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        let components: Vec<&str> = name.split('/').collect();
        match_parts(&self.parts, &components)
    }
}

fn match_parts(parts: &[Part], components: &[&str]) -> bool {
    match parts.split_first() {
        None => components.is_empty(),
        Some((Part::Any, rest)) => {
            (0..=components.len()).any(|skip| match_parts(rest, &components[skip..]))
        }
        Some((Part::Component(p), rest)) => match components.split_first() {
            Some((c, others)) => {
                match_component(p.as_bytes(), c.as_bytes()) && match_parts(rest, others)
            }
            None => false,
        },
    }
}

/// `*` wildcards within one component (no `/` can occur in `text`).
fn match_component(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| match_component(rest, &text[skip..])),
        Some((p, rest)) => text
            .split_first()
            .is_some_and(|(t, others)| t == p && match_component(rest, others)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn single_star_stays_within_a_component() {
        assert!(glob("team/*").matches("team/app"));
        assert!(!glob("team/*").matches("team/a/b"));
        assert!(!glob("team/*").matches("team"));
        assert!(glob("*").matches("alpine"));
        assert!(!glob("*").matches("library/alpine"));
        assert!(glob("team/app-*").matches("team/app-web"));
        assert!(!glob("team/app-*").matches("team/web"));
        assert!(glob("a*c/x").matches("abbc/x"));
    }

    #[test]
    fn double_star_crosses_components() {
        assert!(glob("**").matches("a"));
        assert!(glob("**").matches("a/b/c"));
        assert!(glob("team/**").matches("team/app"));
        assert!(glob("team/**").matches("team/a/b"));
        assert!(!glob("team/**").matches("other/a"));
        assert!(glob("**/base").matches("x/y/base"));
        assert!(glob("**/base").matches("base"));
        assert!(glob("a/**/z").matches("a/z"));
        assert!(glob("a/**/z").matches("a/b/c/z"));
        assert!(!glob("a/**/z").matches("a/b/c"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Glob::new("").is_err());
        assert!(Glob::new("a//b").is_err());
        assert!(Glob::new("a/b**").is_err());
    }

    #[test]
    fn rights_are_the_union_of_matching_rules() {
        let spec = |repos: &[&str], users: &[&str], anonymous, actions: &[&str]| RuleSpec {
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            anonymous,
            actions: actions.iter().map(|s| s.to_string()).collect(),
        };
        let rules = Rules::new(&[
            spec(&["**"], &[], true, &["pull"]),
            spec(&["**"], &["ci"], false, &["push"]),
            spec(&["**"], &["admin"], false, &["pull", "push", "delete"]),
            spec(&["team/*"], &["*"], false, &["push"]),
        ])
        .unwrap();
        let anon = Caller::Anonymous;
        let ci = Caller::User("ci".into());
        let bob = Caller::User("bob".into());
        let admin = Caller::User("admin".into());
        assert!(rules.may(&anon, "a/b", Action::Pull));
        assert!(!rules.may(&anon, "a/b", Action::Push));
        assert!(rules.may(&ci, "a/b", Action::Push));
        assert!(rules.may(&ci, "a/b", Action::Pull));
        assert!(!rules.may(&ci, "a/b", Action::Delete));
        assert!(rules.may(&admin, "a/b", Action::Delete));
        assert!(rules.may(&bob, "team/x", Action::Push));
        assert!(!rules.may(&bob, "team/x/y", Action::Push));
        assert!(Rules::new(&[spec(&["**"], &["x"], false, &["write"])]).is_err());
        assert!(Rules::new(&[spec(&["**"], &[], false, &["pull"])]).is_err());
    }
}
