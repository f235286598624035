//! Consent: the rules, not the records' storage. Pure functions over values
//! (no I/O, no clock): callers load grants and subjects from the store, pass
//! the current time, and get a decision they can record.
//!
//! Two kinds of consent meet in one request:
//! - **photo access**: a [`Grant`] lets an app use some of a user's library
//!   photos (by media item or album) for a purpose until an expiry, revocable
//!   at once. Inline uploads are the user's own act and need no grant.
//! - **likeness**: a [`Subject`] (the user, or a friend, or a child through
//!   a guardian) consents to their face being used by one user. Faces are
//!   labelled against the declared subjects and the public-figure gallery;
//!   the policy decides what a label allows.
//!
//! What a request relied on becomes a [`Receipt`]: ids only, no personal data.

pub use likeness_codes::ErrorCode;
use serde::Serialize;

/// Longest id (user, media item, album) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Most photos plus albums one grant may list.
pub const MAX_GRANT_ITEMS: usize = 1000;
/// Longest subject name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Most enrollment photos per subject.
pub const MAX_ENROLLMENT_PHOTOS: usize = 8;

/// What the photos may be used for. Only generation exists today; a grant
/// for another purpose never covers a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Generation,
}

impl Purpose {
    pub fn parse(s: &str) -> Option<Purpose> {
        match s {
            "generation" => Some(Purpose::Generation),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Generation => "generation",
        }
    }
}

/// A user's permission for an app (tenant) to use some library photos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub tenant: String,
    pub user: String,
    pub photos: Vec<String>,
    pub albums: Vec<String>,
    /// The backends the photos may be sent to; empty: any configured
    /// backend. The built-in generator (which sends nothing anywhere) is
    /// always allowed.
    pub processors: Vec<String>,
    pub purpose: Purpose,
    /// Milliseconds since the Unix epoch, as every time here.
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A person whose likeness a user may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub id: String,
    pub tenant: String,
    /// The user who may use this likeness.
    pub user: String,
    /// Emptied when the subject is deleted.
    pub name: String,
    pub relationship: Relationship,
    pub minor: bool,
    pub guardian_consent: bool,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    /// Set when the user deleted the subject or the person withdrew;
    /// `ended_by` says which.
    pub deleted_at_ms: Option<i64>,
    /// Who ended the consent, when `deleted_at_ms` is set.
    pub ended_by: Option<Actor>,
    /// The person's own word: set when they (or, for a minor, their
    /// guardian) confirmed. A `self` subject is confirmed by the user at
    /// creation: the user is the person shown.
    pub confirmation: Option<Confirmation>,
    /// Face embeddings of the enrollment photos (never the photos).
    pub embeddings: Vec<Vec<f32>>,
}

impl Subject {
    /// The confirmation a `self` subject gets at creation; others start without.
    pub fn initial_confirmation(relationship: Relationship, now_ms: i64) -> Option<Confirmation> {
        (relationship == Relationship::Myself).then_some(Confirmation { by: Actor::User, at_ms: now_ms, photo: false })
    }

    /// Whether the person shown (or their guardian) confirmed.
    pub fn confirmed(&self) -> bool {
        self.confirmation.is_some()
    }

    /// Whether the person (or their guardian) withdrew, rather than the user deleting.
    pub fn withdrawn(&self) -> bool {
        self.deleted_at_ms.is_some() && matches!(self.ended_by, Some(Actor::Person | Actor::Guardian))
    }
}

/// Who acted on a subject's consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The app's user (for a `self` subject, the person shown).
    User,
    /// The person shown, with their confirmation or personal token.
    Person,
    /// A minor's guardian, with the confirmation or personal token.
    Guardian,
}

impl Actor {
    pub fn parse(s: &str) -> Option<Actor> {
        Some(match s {
            "user" => Actor::User,
            "person" => Actor::Person,
            "guardian" => Actor::Guardian,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Actor::User => "user",
            Actor::Person => "person",
            Actor::Guardian => "guardian",
        }
    }
}

/// How a subject's consent was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    pub by: Actor,
    pub at_ms: i64,
    /// The confirmation came with a photo that matched the enrolled faces.
    pub photo: bool,
}

/// Whether a tenant counts only confirmed subjects as consenting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfirmationRule {
    /// Every subject but `self` must be confirmed by the person shown.
    #[default]
    Required,
    /// The user's word is enough; confirmation adds the person's controls
    /// and shows in the policy input.
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    #[serde(rename = "self")]
    Myself,
    Family,
    Friend,
    Other,
}

impl Relationship {
    pub fn parse(s: &str) -> Option<Relationship> {
        Some(match s {
            "self" => Relationship::Myself,
            "family" => Relationship::Family,
            "friend" => Relationship::Friend,
            "other" => Relationship::Other,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Myself => "self",
            Relationship::Family => "family",
            Relationship::Friend => "friend",
            Relationship::Other => "other",
        }
    }
}

/// A new record that cannot be accepted; `field` names the wire field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRecord {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Result<(), InvalidRecord> {
    Err(InvalidRecord { field, message: message.into() })
}

fn check_id(field: &'static str, id: &str) -> Result<(), InvalidRecord> {
    if id.trim().is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return invalid(field, format!("ids must be 1 to {MAX_ID_BYTES} bytes without control characters"));
    }
    Ok(())
}

/// Checks a grant before it is stored.
pub fn validate_grant(g: &Grant, now_ms: i64) -> Result<(), InvalidRecord> {
    check_id("user", &g.user)?;
    if g.photos.is_empty() && g.albums.is_empty() {
        return invalid("photos", "a grant needs at least one photo or album");
    }
    if g.photos.len() + g.albums.len() > MAX_GRANT_ITEMS {
        return invalid("photos", format!("at most {MAX_GRANT_ITEMS} photos and albums per grant"));
    }
    for p in &g.photos {
        check_id("photos", p)?;
    }
    for a in &g.albums {
        check_id("albums", a)?;
    }
    for p in &g.processors {
        check_id("processors", p)?;
    }
    if g.expires_at_ms.is_some_and(|e| e <= now_ms) {
        return invalid("expires_at", "must be in the future");
    }
    Ok(())
}

/// Checks a subject before it is stored. Embeddings are checked by whoever
/// computed them.
pub fn validate_subject(s: &Subject, now_ms: i64) -> Result<(), InvalidRecord> {
    check_id("user", &s.user)?;
    if s.name.trim().is_empty() || s.name.chars().count() > MAX_NAME_CHARS || s.name.chars().any(char::is_control) {
        return invalid("name", format!("must be 1 to {MAX_NAME_CHARS} characters without control characters"));
    }
    if s.minor && !s.guardian_consent {
        return invalid(
            "guardian_consent",
            "a minor's likeness needs a guardian's consent: guardian_consent must be true",
        );
    }
    if s.expires_at_ms.is_some_and(|e| e <= now_ms) {
        return invalid("expires_at", "must be in the future");
    }
    Ok(())
}

/// Why a request may not use what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("reference {index} (media item {media_item_id:?}) is not covered by {}", grant.as_deref().map_or("any grant: the request names none".to_string(), |g| format!("grant {g}")))]
    PhotoNotGranted { index: usize, media_item_id: String, grant: Option<String> },
    #[error("no grant {0} for this app")]
    GrantUnknown(String),
    #[error("grant {grant} belongs to another user")]
    GrantOtherUser { grant: String },
    #[error("grant {grant} is for {purpose}, not generation")]
    GrantWrongPurpose { grant: String, purpose: &'static str },
    #[error("grant {0} has expired")]
    GrantExpired(String),
    #[error("grant {0} was revoked")]
    GrantRevoked(String),
    #[error("grant {grant} does not let its photos go to backend {backend} (it allows: {allowed})")]
    ProcessorNotAllowed { grant: String, backend: String, allowed: String },
    #[error("no subject {0} for this app")]
    SubjectUnknown(String),
    #[error("subject {0} consents to another user")]
    SubjectOtherUser(String),
    #[error("subject {0}'s consent has expired")]
    SubjectExpired(String),
    #[error("subject {0} was deleted")]
    SubjectRevoked(String),
    #[error("subject {0} has not confirmed their consent: the person shown (or a minor's guardian) confirms with the token the app sent them")]
    SubjectUnconfirmed(String),
    #[error("subject {0} withdrew their consent")]
    SubjectWithdrawn(String),
}

impl ConsentError {
    /// The stable code a client sees for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            ConsentError::PhotoNotGranted { .. } => ErrorCode::ConsentPhotoNotGranted,
            ConsentError::GrantUnknown(_) => ErrorCode::ConsentGrantUnknown,
            ConsentError::GrantOtherUser { .. } => ErrorCode::ConsentGrantOtherUser,
            ConsentError::GrantWrongPurpose { .. } => ErrorCode::ConsentGrantWrongPurpose,
            ConsentError::GrantExpired(_) => ErrorCode::ConsentGrantExpired,
            ConsentError::GrantRevoked(_) => ErrorCode::ConsentGrantRevoked,
            ConsentError::ProcessorNotAllowed { .. } => ErrorCode::ConsentProcessorNotAllowed,
            ConsentError::SubjectUnknown(_) => ErrorCode::ConsentSubjectUnknown,
            ConsentError::SubjectOtherUser(_) => ErrorCode::ConsentSubjectOtherUser,
            ConsentError::SubjectExpired(_) => ErrorCode::ConsentSubjectExpired,
            ConsentError::SubjectRevoked(_) => ErrorCode::ConsentSubjectRevoked,
            ConsentError::SubjectUnconfirmed(_) => ErrorCode::ConsentSubjectUnconfirmed,
            ConsentError::SubjectWithdrawn(_) => ErrorCode::ConsentSubjectWithdrawn,
        }
    }
}

/// Where a reference photo came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceSource {
    /// Sent in the request: the user's own act.
    Upload,
    /// From the user's photo library; `album_id` is the album the app picked
    /// it from, when it says so.
    Library { media_item_id: String, album_id: Option<String> },
}

/// Where a reference came from, as the receipt records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Upload,
    Library,
}

/// What in a grant covered a library reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// The grant lists the media item.
    Photo,
    /// The grant lists the album the app picked it from.
    Album,
}

/// How one reference was allowed, as the receipt records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferenceConsent {
    /// 1-based, as in decisions.
    pub reference: usize,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_item_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered_by: Option<Coverage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub album_id: Option<String>,
}

impl Grant {
    /// Whether the grant may be used now, by `user`, for `purpose`.
    pub fn check_usable(&self, user: &str, purpose: Purpose, now_ms: i64) -> Result<(), ConsentError> {
        // Revocation first: it is the user's most recent word.
        if self.revoked_at_ms.is_some() {
            return Err(ConsentError::GrantRevoked(self.id.clone()));
        }
        if self.user != user {
            return Err(ConsentError::GrantOtherUser { grant: self.id.clone() });
        }
        if self.purpose != purpose {
            return Err(ConsentError::GrantWrongPurpose { grant: self.id.clone(), purpose: self.purpose.as_str() });
        }
        if self.expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(ConsentError::GrantExpired(self.id.clone()));
        }
        Ok(())
    }
}

/// The built-in generator: photos never leave the gateway.
pub const BUILTIN: &str = "builtin";

/// Checks that every library reference is covered by `grant` (already
/// loaded for this tenant, or `None` when the request names none), that the
/// grant lets its photos go to `processor` (the backend the request goes
/// to), and says how each reference was allowed.
pub fn check_references(
    grant: Option<&Grant>,
    user: &str,
    now_ms: i64,
    references: &[ReferenceSource],
    processor: &str,
) -> Result<Vec<ReferenceConsent>, ConsentError> {
    if let Some(g) = grant {
        g.check_usable(user, Purpose::Generation, now_ms)?;
        let library = references.iter().any(|r| matches!(r, ReferenceSource::Library { .. }));
        if library && processor != BUILTIN && !g.processors.is_empty() && !g.processors.iter().any(|p| p == processor) {
            return Err(ConsentError::ProcessorNotAllowed {
                grant: g.id.clone(),
                backend: processor.to_string(),
                allowed: g.processors.join(", "),
            });
        }
    }
    references
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let index = i + 1;
            match r {
                ReferenceSource::Upload => Ok(ReferenceConsent {
                    reference: index,
                    source: Source::Upload,
                    media_item_id: None,
                    covered_by: None,
                    album_id: None,
                }),
                ReferenceSource::Library { media_item_id, album_id } => {
                    let not_granted = || ConsentError::PhotoNotGranted {
                        index,
                        media_item_id: media_item_id.clone(),
                        grant: grant.map(|g| g.id.clone()),
                    };
                    let g = grant.ok_or_else(not_granted)?;
                    let covered_by = if g.photos.iter().any(|p| p == media_item_id) {
                        Coverage::Photo
                    } else if album_id.as_ref().is_some_and(|a| g.albums.contains(a)) {
                        Coverage::Album
                    } else {
                        return Err(not_granted());
                    };
                    Ok(ReferenceConsent {
                        reference: index,
                        source: Source::Library,
                        media_item_id: Some(media_item_id.clone()),
                        covered_by: Some(covered_by),
                        album_id: album_id.clone().filter(|_| covered_by == Coverage::Album),
                    })
                }
            }
        })
        .collect()
}

/// Checks the subjects a request declares. `found` holds the records the
/// store returned for those ids (for this tenant); any id missing from it is
/// unknown. `rule` is the tenant's: whether the person must have confirmed.
pub fn check_subjects(
    declared: &[String],
    found: &[Subject],
    user: &str,
    now_ms: i64,
    rule: ConfirmationRule,
) -> Result<(), ConsentError> {
    for id in declared {
        let s = found.iter().find(|s| &s.id == id).ok_or_else(|| ConsentError::SubjectUnknown(id.clone()))?;
        // The person's own withdrawal first: it is the most recent word.
        if s.withdrawn() {
            return Err(ConsentError::SubjectWithdrawn(id.clone()));
        }
        if s.deleted_at_ms.is_some() {
            return Err(ConsentError::SubjectRevoked(id.clone()));
        }
        if s.user != user {
            return Err(ConsentError::SubjectOtherUser(id.clone()));
        }
        if s.expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(ConsentError::SubjectExpired(id.clone()));
        }
        if rule == ConfirmationRule::Required && !s.confirmed() {
            return Err(ConsentError::SubjectUnconfirmed(id.clone()));
        }
    }
    Ok(())
}

/// Who a face in a reference is, as far as the request can tell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "label", rename_all = "snake_case")]
pub enum FaceLabel {
    /// Matches an enrolled embedding of a declared subject who consents to
    /// this user.
    ConsentingSubject {
        subject: String,
        #[serde(serialize_with = "three_decimals")]
        distance: f32,
    },
    /// Matches the public-figure gallery.
    PublicFigure {
        name: String,
        #[serde(serialize_with = "three_decimals")]
        distance: f32,
    },
    Unknown,
}

/// Serialises a score or distance with three decimals (0.867, not
/// 0.8669999837875366). Values are kept whole in memory: rounding happens
/// only here, so it can never move a score across a threshold.
pub fn three_decimals<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((f64::from(*v) * 1000.0).round() / 1000.0)
}

/// What vision found about one face, as the rules need it.
#[derive(Debug, Clone)]
pub struct FaceFacts<'a> {
    pub embedding: &'a [f32],
    pub p_minor: f32,
    /// The nearest gallery entry within the match distance, if any.
    pub public_figure: Option<(String, f32)>,
}

/// Labels one face. A public-figure match wins over a subject match:
/// enrollment refuses public figures' faces, so a face matching both is
/// treated as the riskier one.
pub fn label_face(face: &FaceFacts<'_>, subjects: &[Subject], match_distance: f32) -> FaceLabel {
    if let Some((name, distance)) = &face.public_figure {
        return FaceLabel::PublicFigure { name: name.clone(), distance: *distance };
    }
    let nearest = subjects
        .iter()
        .flat_map(|s| s.embeddings.iter().map(move |e| (s, distance(face.embedding, e))))
        .filter(|(_, d)| *d < match_distance)
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match nearest {
        Some((s, d)) => FaceLabel::ConsentingSubject { subject: s.id.clone(), distance: d },
        None => FaceLabel::Unknown,
    }
}

/// Euclidean distance; vectors of different lengths never match.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

/// What one request relied on. Ids only: the manifest of every output names
/// the receipt's id, never the user, names or photos.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    /// Empty in a refused request's decision: no receipt is stored for it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Subjects whose likeness was found and allowed.
    pub subjects: Vec<String>,
    /// For each of `subjects` the person shown confirmed: by whom and when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub confirmations: Vec<SubjectConfirmation>,
    pub references: Vec<ReferenceConsent>,
    pub purpose: Purpose,
    /// Where the photos went: `builtin`, or the backend's name.
    pub processor: String,
}

/// A receipt's record that a subject's consent came from the person shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectConfirmation {
    pub subject: String,
    pub confirmed_by: Actor,
    /// RFC 3339.
    pub confirmed_at: String,
    /// The confirmation came with a photo matching the enrolled faces.
    pub with_photo: bool,
}

impl SubjectConfirmation {
    pub fn of(s: &Subject) -> Option<SubjectConfirmation> {
        let c = s.confirmation?;
        Some(SubjectConfirmation {
            subject: s.id.clone(),
            confirmed_by: c.by,
            confirmed_at: format_time(c.at_ms),
            with_photo: c.photo,
        })
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC), as every time on the wire.
pub fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
