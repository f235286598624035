//! Golden cases: files under `tests/` in the policy folder, each a list of
//! inputs with the action and the fired rules expected. `likeness policy
//! test` runs them; a change to the policy that changes an answer shows as
//! a failed case before it is rolled out.
//!
//! ```yaml
//! cases:
//!   - name: a public figure in a reference is blocked
//!     input:
//!       references: [{ name: reference 1, faces: [{ label: public_figure, matches: [{ id: x, name: X, distance: 0.3 }] }] }]
//!     expect: { action: block, rules: [public-figure-in-reference] }
//! ```

use serde::{Deserialize, Serialize};

use crate::{Action, Input, Policy, Problem, SourceFile};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenFile {
    cases: Vec<GoldenCase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCase {
    pub name: String,
    /// The input document; fields left out take their defaults.
    #[serde(default)]
    pub input: Input,
    pub expect: Expected,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub action: Action,
    /// Every rule expected to fire, enforced or shadow, in policy order.
    #[serde(default)]
    pub rules: Vec<String>,
    /// The reason, when it matters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct GoldenResult {
    pub file: String,
    pub name: String,
    pub passed: bool,
    pub expected: Expected,
    pub action: Action,
    pub rules: Vec<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
}

/// Runs every case in the `tests/` files; a file that cannot be read is a problem.
pub fn run_golden(policy: &Policy, files: &[SourceFile]) -> Result<Vec<GoldenResult>, Vec<Problem>> {
    let mut results = Vec::new();
    let mut problems = Vec::new();
    for f in files.iter().filter(|f| f.path.starts_with("tests/")) {
        let parsed: GoldenFile = match serde_saphyr::from_str(&f.text) {
            Ok(p) => p,
            Err(e) => {
                let line = e.location().map(|l| l.line()).filter(|&l| l > 0);
                let message = e.to_string().lines().next().unwrap_or("not valid YAML").to_string();
                problems.push(Problem { file: f.path.clone(), line, rule: None, message });
                continue;
            }
        };
        for case in parsed.cases {
            let evaluation = policy.evaluate(&case.input);
            let outcome = evaluation.outcome();
            let rules: Vec<String> = evaluation.fired().map(|r| r.id.clone()).collect();
            let error = outcome.failed.as_ref().map(|(id, e)| format!("rule {id}: {e}"));
            let passed = error.is_none()
                && outcome.action == case.expect.action
                && rules == case.expect.rules
                && case.expect.reason.as_ref().is_none_or(|r| outcome.reason.as_ref() == Some(r));
            results.push(GoldenResult {
                file: f.path.clone(),
                name: case.name,
                passed,
                expected: case.expect,
                action: outcome.action,
                rules,
                reason: outcome.reason,
                error,
            });
        }
    }
    if problems.is_empty() {
        Ok(results)
    } else {
        Err(problems)
    }
}
