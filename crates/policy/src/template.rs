//! A rule's message: text with `{{ expression }}` parts, evaluated when the
//! rule fires, e.g. `"{{ image.name }} shows someone who may be a child"`.
//! The expressions are checked against the schema like `when`.

use std::collections::BTreeMap;

use cel::{Context, Env, Program, Value};

use crate::schema::{self, Scope};

enum Part {
    Text(String),
    Expr(Program),
}

pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub(crate) fn parse(
        text: &str,
        env: &Env,
        scope: &Scope<'_>,
        params: &BTreeMap<String, f64>,
    ) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            parts.push(Part::Text(rest[..start].to_string()));
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or("a `{{` without its `}}`")?;
            let source = after[..end].trim();
            let program = env.compile(source).map_err(|e| format!("{{{{ {source} }}}} is not valid CEL: {e}"))?;
            schema::check(program.expression(), scope, params).map_err(|e| format!("{{{{ {source} }}}}: {e}"))?;
            parts.push(Part::Expr(program));
            rest = &after[end + 2..];
        }
        parts.push(Part::Text(rest.to_string()));
        Ok(Template { parts })
    }

    pub(crate) fn render(&self, ctx: &Context) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => out.push_str(&show(&e.execute(ctx).map_err(|e| format!("in the message: {e}"))?)),
            }
        }
        Ok(out)
    }
}

/// A value as a person reads it: text bare, numbers short, lists joined.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => {
            let s = format!("{f:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        Value::Bool(b) => b.to_string(),
        Value::List(items) => items.iter().map(show).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}
