//! The input document: everything a rule may look at, and nothing else.
//! Scores, labels, counts and categories; never pixels, prompts or
//! embeddings. The decision log keeps it, so a candidate policy can be
//! replayed against past traffic. Every field has a default, so golden
//! cases and dry runs write only what matters to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// When a rule runs: on the references before generation, or on the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// References, prompt and consent facts, before anything is generated.
    #[default]
    Pre,
    /// The outputs, before they are marked and signed.
    Post,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pre => "pre",
            Stage::Post => "post",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Input {
    pub stage: Stage,
    /// The app (tenant) that sent the request.
    pub tenant: String,
    /// The app's pseudonymous id of its user.
    pub user: String,
    pub request: RequestFacts,
    pub prompt: PromptFacts,
    pub references: Vec<ImageFacts>,
    /// Empty before generation.
    pub outputs: Vec<ImageFacts>,
    pub consent: ConsentFacts,
    pub history: HistoryFacts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestFacts {
    pub style: String,
    /// Images asked for.
    pub n: i64,
    pub width: i64,
    pub height: i64,
    /// The generator the request goes to (`builtin`, or a configured backend).
    pub backend: String,
    /// How many reference photos.
    pub references: i64,
    /// Where each reference came from: `upload` or `library`.
    pub sources: Vec<String>,
}

impl Default for RequestFacts {
    fn default() -> Self {
        RequestFacts {
            style: "watercolor".into(),
            n: 1,
            width: 1024,
            height: 1024,
            backend: "builtin".into(),
            references: 0,
            sources: Vec::new(),
        }
    }
}

/// What the prompt is about, never what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PromptFacts {
    /// Characters.
    pub length: i64,
    /// The phrase-list categories it matched (`sexual`, `minors`,
    /// `violence`, `self_harm`, `public_figure_named`...).
    pub categories: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFacts {
    /// `reference 1`, `output 2`...
    pub name: String,
    pub faces: Vec<FaceFacts>,
    /// P(not safe for work).
    pub nsfw: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaceFacts {
    /// x, y, width, height in pixels.
    #[serde(rename = "box")]
    pub bbox: Vec<f64>,
    /// Detection score.
    pub score: f64,
    /// Expected age in years.
    pub age: f64,
    /// P(age < 18).
    pub p_minor: f64,
    /// `consenting_subject`, `public_figure` or `unknown`.
    pub label: String,
    /// The declared subject the face matched, when it is one; else null.
    pub subject: Option<SubjectFacts>,
    /// Public-figure gallery entries within the match distance, nearest first.
    pub matches: Vec<GalleryMatchFacts>,
}

impl Default for FaceFacts {
    fn default() -> Self {
        FaceFacts {
            bbox: vec![0.0; 4],
            score: 0.9,
            age: 35.0,
            p_minor: 0.0,
            label: "unknown".into(),
            subject: None,
            matches: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubjectFacts {
    pub id: String,
    /// `self`, `family`, `friend` or `other`.
    pub relationship: String,
    pub minor: bool,
    pub guardian_consent: bool,
    /// Whether the person shown confirmed their consent (the user's word
    /// alone is `false`).
    pub confirmed: bool,
}

impl Default for SubjectFacts {
    fn default() -> Self {
        SubjectFacts {
            id: String::new(),
            relationship: "self".into(),
            minor: false,
            guardian_consent: false,
            confirmed: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GalleryMatchFacts {
    pub id: String,
    pub name: String,
    pub distance: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentFacts {
    /// Whether the request names a photo-access grant.
    pub grant: bool,
    /// The grant's purpose, or empty.
    pub grant_purpose: String,
    /// The subjects the request declares (each checked usable by this user).
    pub subjects: Vec<SubjectFacts>,
    /// Consenting minor subjects (with a guardian's consent) the references
    /// showed: as many likely minors may appear in an output.
    pub consenting_minors: i64,
}

/// The user's recent history from the decision log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryFacts {
    /// Refusals (block or review) in the last 24 hours, by reason.
    pub refusals_24h: BTreeMap<String, i64>,
    /// All refusals in the last 24 hours.
    pub refusals_24h_total: i64,
}
