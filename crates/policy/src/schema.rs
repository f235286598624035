//! The documented input, as types: what `policies/SCHEMA.md` shows and what
//! every expression is checked against when a policy loads, so a misspelt
//! field or a comparison of a number with a string is refused before it
//! can decide anything.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use cel::common::ast::{operators, Expr, IdedExpr, LiteralValue};

#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Bool,
    Int,
    Double,
    String,
    List(Box<Type>),
    /// String keys.
    Map(Box<Type>),
    Object(&'static str),
    /// Null, or a value of the inner type.
    Nullable(Box<Type>),
    /// Not known until evaluation (null literals, empty lists).
    Dyn,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Int => f.write_str("int"),
            Type::Double => f.write_str("double"),
            Type::String => f.write_str("string"),
            Type::List(t) => write!(f, "list of {t}"),
            Type::Map(t) => write!(f, "map of string to {t}"),
            Type::Object(name) => f.write_str(name),
            Type::Nullable(t) => write!(f, "{t} or null"),
            Type::Dyn => f.write_str("any"),
        }
    }
}

pub struct Field {
    pub name: &'static str,
    pub ty: Type,
    pub doc: &'static str,
}

pub struct ObjectType {
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: Vec<Field>,
}

/// The objects of the input and the variables a rule sees.
pub struct Schema {
    pub objects: Vec<ObjectType>,
    /// Top-level variables: the input's fields, `params`, and `image` in
    /// rules of scope `image`.
    pub variables: Vec<Field>,
}

fn f(name: &'static str, ty: Type, doc: &'static str) -> Field {
    Field { name, ty, doc }
}

fn list(t: Type) -> Type {
    Type::List(Box::new(t))
}

pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        use Type::*;
        let subject = || Object("Subject");
        Schema {
            objects: vec![
                ObjectType {
                    name: "Request",
                    doc: "What was asked for.",
                    fields: vec![
                        f("style", String, "the style resolved for the request, e.g. `watercolor`"),
                        f("n", Int, "images asked for"),
                        f("width", Int, "pixels"),
                        f("height", Int, "pixels"),
                        f("backend", String, "the generator: `builtin` or a configured backend's name"),
                        f("references", Int, "how many reference photos"),
                        f("sources", list(String), "where each reference came from: `upload` or `library`"),
                    ],
                },
                ObjectType {
                    name: "Prompt",
                    doc: "What the prompt is about; never its text.",
                    fields: vec![
                        f("length", Int, "characters"),
                        f(
                            "categories",
                            list(String),
                            "the phrase-list categories it matched (files in `categories/`, plus `public_figure_named` for a gallery name)",
                        ),
                    ],
                },
                ObjectType {
                    name: "Image",
                    doc: "A reference or an output, as the vision models scored it.",
                    fields: vec![
                        f("name", String, "`reference 1`, `output 2`..."),
                        f("faces", list(Object("Face")), "every face found"),
                        f("nsfw", Double, "P(not safe for work), 0 to 1"),
                    ],
                },
                ObjectType {
                    name: "Face",
                    doc: "One face.",
                    fields: vec![
                        f("box", list(Double), "x, y, width, height in pixels"),
                        f("score", Double, "detection score, 0 to 1"),
                        f("age", Double, "expected age in years"),
                        f("p_minor", Double, "P(age < 18), 0 to 1"),
                        f("label", String, "`consenting_subject`, `public_figure` or `unknown`"),
                        f("subject", Nullable(Box::new(subject())), "the declared subject it matched, or null"),
                        f("matches", list(Object("GalleryMatch")), "public-figure gallery entries within the match distance, nearest first"),
                    ],
                },
                ObjectType {
                    name: "Subject",
                    doc: "A person whose likeness the user may use.",
                    fields: vec![
                        f("id", String, "`sub_...`"),
                        f("relationship", String, "`self`, `family`, `friend` or `other`"),
                        f("minor", Bool, "enrolled as a minor"),
                        f("guardian_consent", Bool, "a guardian consented (always true for a minor)"),
                        f("confirmed", Bool, "the person shown confirmed their consent themselves"),
                    ],
                },
                ObjectType {
                    name: "GalleryMatch",
                    doc: "A public-figure gallery entry close to a face.",
                    fields: vec![
                        f("id", String, "the gallery entry's id"),
                        f("name", String, "the public figure's name"),
                        f("distance", Double, "embedding distance; lower is closer"),
                    ],
                },
                ObjectType {
                    name: "Consent",
                    doc: "What the request relies on, checked before the policy runs.",
                    fields: vec![
                        f("grant", Bool, "the request names a photo-access grant"),
                        f("grant_purpose", String, "the grant's purpose, or empty"),
                        f("subjects", list(subject()), "the subjects the request declares"),
                        f(
                            "consenting_minors",
                            Int,
                            "consenting minor subjects (with a guardian's consent) the references showed",
                        ),
                    ],
                },
                ObjectType {
                    name: "History",
                    doc: "The same user's recent decisions, from the decision log.",
                    fields: vec![
                        f("refusals_24h", Map(Box::new(Int)), "refusals (block or review) in the last 24 hours, by reason"),
                        f("refusals_24h_total", Int, "all refusals in the last 24 hours"),
                    ],
                },
            ],
            variables: vec![
                f("stage", String, "`pre` (before generation) or `post` (on the outputs)"),
                f("tenant", String, "the app that sent the request"),
                f("user", String, "the app's pseudonymous user id"),
                f("request", Object("Request"), "what was asked for"),
                f("prompt", Object("Prompt"), "what the prompt is about"),
                f("references", list(Object("Image")), "the reference photos"),
                f("outputs", list(Object("Image")), "the generated images; empty at `pre`"),
                f("consent", Object("Consent"), "consent facts"),
                f("history", Object("History"), "the user's recent history"),
                f("params", Map(Box::new(Double)), "the policy's named thresholds"),
                f("image", Object("Image"), "in rules of scope `image` only: the image being checked"),
            ],
        }
    })
}

impl Schema {
    pub fn object(&self, name: &str) -> Option<&ObjectType> {
        self.objects.iter().find(|o| o.name == name)
    }

    /// `policies/SCHEMA.md`, generated from this schema.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "# The policy input\n\n\
             Generated by `likeness policy schema` from the code; a test keeps this file equal to it.\n\n\
             A rule's `when` is a CEL expression over these variables. Every identifier and field is checked \
             against this schema when the policy loads. Numbers are `int` or `double`: compare like with like \
             (`face.p_minor >= 0.3`, `request.n > 1`).\n\n\
             ## Variables\n\n| name | type | meaning |\n|---|---|---|\n",
        );
        for v in &self.variables {
            out.push_str(&format!("| `{}` | {} | {} |\n", v.name, v.ty, v.doc));
        }
        for o in &self.objects {
            out.push_str(&format!("\n## {}\n\n{}\n\n| field | type | meaning |\n|---|---|---|\n", o.name, o.doc));
            for fl in &o.fields {
                out.push_str(&format!("| `{}` | {} | {} |\n", fl.name, fl.ty, fl.doc));
            }
        }
        out.push_str(
            "\n## Functions\n\n\
             `size(x)` (string, list or map), `int(x)`, `double(x)`, `string(x)`; on strings `s.contains(t)`, \
             `s.startsWith(t)`, `s.endsWith(t)`; `x in list`; on lists the macros `l.exists(v, cond)`, \
             `l.all(v, cond)`, `l.exists_one(v, cond)`, `l.filter(v, cond)`, `l.map(v, expr)`; `has(o.field)`.\n",
        );
        out
    }
}

/// Variables in scope: their types, innermost last.
pub(crate) struct Scope<'a> {
    vars: Vec<(&'a str, Type)>,
}

impl<'a> Scope<'a> {
    /// The variables of a rule: with `image` only for rules of scope image.
    pub(crate) fn for_rule(image_scope: bool) -> Scope<'static> {
        let vars = schema()
            .variables
            .iter()
            .filter(|v| image_scope || v.name != "image")
            .map(|v| (v.name, v.ty.clone()))
            .collect();
        Scope { vars }
    }

    fn lookup(&self, name: &str) -> Option<&Type> {
        self.vars.iter().rev().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    fn with<'b>(&'b self, extra: Vec<(&'b str, Type)>) -> Scope<'b> {
        let mut vars: Vec<(&'b str, Type)> = self.vars.iter().map(|(n, t)| (*n, t.clone())).collect();
        vars.extend(extra);
        Scope { vars }
    }
}

fn numeric(t: &Type) -> bool {
    matches!(t, Type::Int | Type::Double | Type::Dyn)
}

fn strip_null(t: Type) -> Type {
    match t {
        Type::Nullable(inner) => *inner,
        t => t,
    }
}

/// Two types that may meet in `==`, `<`: the same, or either unknown.
fn compatible(a: &Type, b: &Type) -> bool {
    a == b
        || matches!(a, Type::Dyn)
        || matches!(b, Type::Dyn)
        || matches!((a, b), (Type::Nullable(_), _) | (_, Type::Nullable(_)))
}

/// Checks an expression against the schema and returns its type, or says
/// what is wrong in words a policy author understands.
pub(crate) fn check(e: &IdedExpr, scope: &Scope<'_>, params: &BTreeMap<String, f64>) -> Result<Type, String> {
    match &e.expr {
        Expr::Ident(name) => match scope.lookup(name) {
            Some(t) => Ok(t.clone()),
            None => {
                let known: Vec<&str> = scope.vars.iter().map(|(n, _)| *n).filter(|n| !n.starts_with('@')).collect();
                let hint = if name == "image" { " (`image` exists only in rules with `scope: image`)" } else { "" };
                Err(format!("unknown identifier `{name}`{hint}; the input has: {}", known.join(", ")))
            }
        },
        Expr::Literal(l) => Ok(match l {
            LiteralValue::Boolean(_) => Type::Bool,
            LiteralValue::Int(_) | LiteralValue::UInt(_) => Type::Int,
            LiteralValue::Double(_) => Type::Double,
            LiteralValue::String(_) => Type::String,
            LiteralValue::Null | LiteralValue::Bytes(_) => Type::Dyn,
        }),
        Expr::Select(s) => {
            // `params.name` must be a declared parameter.
            if let Expr::Ident(root) = &s.operand.expr {
                if root == "params" && scope.lookup("params").is_some() {
                    if !params.contains_key(&s.field) {
                        let known: Vec<&String> = params.keys().collect();
                        return Err(format!(
                            "unknown parameter `params.{}`; the policy declares: {}",
                            s.field,
                            if known.is_empty() { "none".to_string() } else { format!("{known:?}") }
                        ));
                    }
                    return Ok(if s.test { Type::Bool } else { Type::Double });
                }
            }
            let operand = check(&s.operand, scope, params)?;
            let t = field_type(&strip_null(operand), &s.field)?;
            Ok(if s.test { Type::Bool } else { t })
        }
        Expr::List(l) => {
            let mut elem = Type::Dyn;
            for item in &l.elements {
                let t = check(item, scope, params)?;
                if elem == Type::Dyn {
                    elem = t;
                }
            }
            Ok(Type::List(Box::new(elem)))
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    check(&me.key, scope, params)?;
                    check(&me.value, scope, params)?;
                }
            }
            Ok(Type::Map(Box::new(Type::Dyn)))
        }
        Expr::Comprehension(c) => {
            let range = strip_null(check(&c.iter_range, scope, params)?);
            let elem = match &range {
                Type::List(t) => (**t).clone(),
                Type::Map(_) => Type::String,
                Type::Dyn => Type::Dyn,
                other => return Err(format!("a macro like `exists` or `all` needs a list, not a {other}")),
            };
            let accu = check(&c.accu_init, scope, params)?;
            let inner = scope.with(vec![(c.iter_var.as_str(), elem), (c.accu_var.as_str(), accu)]);
            check(&c.loop_cond, &inner, params)?;
            let step = check(&c.loop_step, &inner, params)?;
            // `map` and `filter` build a list: its element type is what the
            // step appends.
            let inner = inner.with(vec![(c.accu_var.as_str(), step)]);
            check(&c.result, &inner, params)
        }
        Expr::Call(call) => check_call(&call.func_name, call.target.as_deref(), &call.args, scope, params),
        Expr::Struct(_) => Err("object literals are not supported".into()),
        Expr::Unspecified => Err("an empty expression".into()),
    }
}

fn field_type(on: &Type, field: &str) -> Result<Type, String> {
    match on {
        Type::Object(name) => {
            let object = schema().object(name).expect("schema objects name each other");
            object.fields.iter().find(|f| f.name == field).map(|f| f.ty.clone()).ok_or_else(|| {
                let known: Vec<&str> = object.fields.iter().map(|f| f.name).collect();
                format!("{name} has no field `{field}`; it has: {}", known.join(", "))
            })
        }
        Type::Map(t) => Ok((**t).clone()),
        Type::Dyn => Ok(Type::Dyn),
        other => Err(format!("`.{field}` on a {other}, which has no fields")),
    }
}

fn check_call(
    name: &str,
    target: Option<&IdedExpr>,
    args: &[IdedExpr],
    scope: &Scope<'_>,
    params: &BTreeMap<String, f64>,
) -> Result<Type, String> {
    let arg = |i: usize| -> Result<Type, String> { check(&args[i], scope, params).map(strip_null) };
    let want_args = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("`{name}` takes {n} argument(s), not {}", args.len()))
        }
    };
    match name {
        operators::LOGICAL_AND | operators::LOGICAL_OR => {
            for i in 0..args.len() {
                let t = arg(i)?;
                if !matches!(t, Type::Bool | Type::Dyn) {
                    return Err(format!("`&&` and `||` join true/false values, not a {t}"));
                }
            }
            Ok(Type::Bool)
        }
        operators::LOGICAL_NOT | operators::NOT_STRICTLY_FALSE => {
            want_args(1)?;
            let t = arg(0)?;
            if !matches!(t, Type::Bool | Type::Dyn) {
                return Err(format!("`!` applies to true/false, not a {t}"));
            }
            Ok(Type::Bool)
        }
        operators::NEGATE => {
            want_args(1)?;
            let t = arg(0)?;
            if !numeric(&t) {
                return Err(format!("`-` applies to numbers, not a {t}"));
            }
            Ok(t)
        }
        operators::EQUALS | operators::NOT_EQUALS => {
            want_args(2)?;
            let (a, b) = (arg(0)?, arg(1)?);
            if !compatible(&a, &b) {
                return Err(format!("compares a {a} with a {b}: they are never equal"));
            }
            Ok(Type::Bool)
        }
        operators::LESS | operators::LESS_EQUALS | operators::GREATER | operators::GREATER_EQUALS => {
            want_args(2)?;
            let (a, b) = (arg(0)?, arg(1)?);
            let ok = (a == b && matches!(a, Type::Int | Type::Double | Type::String))
                || matches!(a, Type::Dyn)
                || matches!(b, Type::Dyn);
            if !ok {
                let hint = if numeric(&a) && numeric(&b) { " (write a double as 0.5 or 1.0, an int as 1)" } else { "" };
                return Err(format!("compares a {a} with a {b}{hint}"));
            }
            Ok(Type::Bool)
        }
        operators::ADD | operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO => {
            want_args(2)?;
            let (a, b) = (arg(0)?, arg(1)?);
            match (&a, &b) {
                (Type::Dyn, t) | (t, Type::Dyn) => Ok(t.clone()),
                (Type::String, Type::String) | (Type::List(_), Type::List(_)) if name == operators::ADD => Ok(a),
                (x, y) if x == y && numeric(x) => Ok(a),
                _ => Err(format!("`{}` on a {a} and a {b}", name.trim_matches('_'))),
            }
        }
        operators::CONDITIONAL => {
            want_args(3)?;
            let c = arg(0)?;
            if !matches!(c, Type::Bool | Type::Dyn) {
                return Err(format!("the condition of `? :` must be true/false, not a {c}"));
            }
            let (a, b) = (arg(1)?, arg(2)?);
            Ok(if a == b { a } else { Type::Dyn })
        }
        operators::INDEX => {
            want_args(2)?;
            let (on, index) = (arg(0)?, arg(1)?);
            match on {
                Type::List(t) if matches!(index, Type::Int | Type::Dyn) => Ok(*t),
                Type::Map(t) if matches!(index, Type::String | Type::Dyn) => Ok(*t),
                Type::Dyn => Ok(Type::Dyn),
                other => Err(format!("`[{index}]` on a {other}")),
            }
        }
        operators::IN => {
            want_args(2)?;
            let (x, within) = (arg(0)?, arg(1)?);
            match within {
                Type::List(t) if compatible(&x, &t) => Ok(Type::Bool),
                Type::Map(_) if matches!(x, Type::String | Type::Dyn) => Ok(Type::Bool),
                Type::Dyn => Ok(Type::Bool),
                other => Err(format!("`in` looks for a {x} in a {other}")),
            }
        }
        "size" => {
            let t = match (target, args.len()) {
                (Some(t), 0) => strip_null(check(t, scope, params)?),
                (None, 1) => arg(0)?,
                _ => return Err("`size` takes one value".into()),
            };
            match t {
                Type::String | Type::List(_) | Type::Map(_) | Type::Dyn => Ok(Type::Int),
                other => Err(format!("`size` of a {other}")),
            }
        }
        "int" | "double" | "string" => {
            want_args(1)?;
            arg(0)?;
            Ok(match name {
                "int" => Type::Int,
                "double" => Type::Double,
                _ => Type::String,
            })
        }
        "contains" | "startsWith" | "endsWith" => {
            let Some(t) = target else { return Err(format!("write `text.{name}(other)`")) };
            want_args(1)?;
            let (on, with) = (strip_null(check(t, scope, params)?), arg(0)?);
            if !matches!(on, Type::String | Type::Dyn) || !matches!(with, Type::String | Type::Dyn) {
                return Err(format!("`{name}` works on strings, not a {on}"));
            }
            Ok(Type::Bool)
        }
        other => Err(format!(
            "unknown function `{other}`; the functions are size, int, double, string, contains, startsWith, \
             endsWith and the list macros exists, all, exists_one, filter, map"
        )),
    }
}
