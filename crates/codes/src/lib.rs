//! The registry of error codes: every code a client can receive, the HTTP
//! status it comes with, and what it means. One table, so a code is written
//! once; library errors name an [`ErrorCode`], and the HTTP edge turns it
//! into a status and a body. The README's table of codes is checked against
//! this one, both ways, by a test in this crate.
//!
//! Codes are stable: clients match on them. Renaming one is a breaking change.

use std::fmt;

macro_rules! registry {
    ($($variant:ident = $code:literal, $status:literal, $meaning:literal;)+) => {
        /// A stable, dotted error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in registry order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as clients see it, e.g. `consent.grant_expired`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The HTTP status it is answered with.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)+ }
            }

            /// What it means, in a sentence.
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)+ }
            }
        }
    };
}

registry! {
    // The request itself.
    RequestMalformed = "request.malformed", 400, "the body is not JSON";
    RequestTooLarge = "request.too_large", 413, "the body is over the size limit";
    RequestBodyTimeout = "request.body_timeout", 408, "the body did not arrive in time";
    RequestUnsupportedMediaType = "request.unsupported_media_type", 415, "the body is not application/json";
    RequestInvalid = "request.invalid", 422, "wrong types, missing or unknown fields";
    RequestNOutOfRange = "request.n_out_of_range", 422, "n is outside what is allowed";
    RequestSizeOutOfRange = "request.size_out_of_range", 422, "a side of size is outside what is allowed";
    RequestSizeInvalid = "request.size_invalid", 422, "size is not WIDTHxHEIGHT";
    RequestTooManyReferences = "request.too_many_references", 422, "more references than allowed";
    RequestPromptInvalid = "request.prompt_invalid", 422, "the prompt is too long, or empty with no reference";
    RequestUserInvalid = "request.user_invalid", 422, "the user id is empty or too long";
    RequestOutputFormatUnknown = "request.output_format_unknown", 422, "output_format is not jpeg or png";
    RequestUnknownStyle = "request.unknown_style", 422, "the style is not one the generator knows";
    RequestResponseFormatUnsupported = "request.response_format_unsupported", 400, "response_format is not b64_json (images are signed, not hosted)";
    // Authentication and routing.
    AuthMissing = "auth.missing", 401, "no Authorization header";
    AuthMalformed = "auth.malformed", 401, "the Authorization header is not Bearer KEY";
    AuthInvalidKey = "auth.invalid_key", 401, "no tenant has this API key";
    RouteNotFound = "route.not_found", 404, "no such endpoint";
    RouteMethodNotAllowed = "route.method_not_allowed", 405, "the endpoint does not take that method";
    // Reference photos.
    ReferenceTooLarge = "reference.too_large", 413, "a reference is over the byte limit";
    ReferenceTooManyPixels = "reference.too_many_pixels", 413, "a reference is over the pixel limits (decompression bombs included)";
    ReferenceUnsupportedFormat = "reference.unsupported_format", 415, "a reference is not JPEG, PNG or WebP";
    ReferenceInvalidBase64 = "reference.invalid_base64", 422, "a reference's data is not base64";
    ReferenceMimeMismatch = "reference.mime_mismatch", 422, "a reference is not of its declared type";
    ReferenceCorrupt = "reference.corrupt", 422, "a reference cannot be decoded";
    // Consent: photo access.
    ConsentPhotoNotGranted = "consent.photo_not_granted", 403, "a library photo no grant covers";
    ConsentGrantUnknown = "consent.grant_unknown", 403, "the grant does not exist for this app";
    ConsentGrantOtherUser = "consent.grant_other_user", 403, "the grant belongs to another user";
    ConsentGrantWrongPurpose = "consent.grant_wrong_purpose", 403, "the grant is for another purpose";
    ConsentGrantExpired = "consent.grant_expired", 403, "the grant has expired";
    ConsentGrantRevoked = "consent.grant_revoked", 403, "the grant was revoked";
    // Consent: likeness.
    ConsentSubjectUnknown = "consent.subject_unknown", 403, "a declared subject does not exist for this app";
    ConsentSubjectOtherUser = "consent.subject_other_user", 403, "a declared subject consents to another user";
    ConsentSubjectExpired = "consent.subject_expired", 403, "a declared subject's consent has expired";
    ConsentSubjectRevoked = "consent.subject_revoked", 403, "a declared subject was deleted";
    ConsentSubjectUnconfirmed = "consent.subject_unconfirmed", 403, "a declared subject has not confirmed their consent (the app's tenant requires it)";
    ConsentSubjectWithdrawn = "consent.subject_withdrawn", 403, "a declared subject withdrew their consent";
    ConsentUnknownPerson = "consent.unknown_person", 403, "a reference shows a person no declared subject covers";
    ConsentMinorWithoutGuardian = "consent.minor_without_guardian", 403, "a reference shows a likely minor without a guardian's consent";
    // Vision and the rules on its scores.
    VisionPublicFigure = "vision.public_figure", 403, "an image shows a face from the public-figure gallery";
    VisionMinor = "vision.minor", 403, "an output shows a likely minor the references did not justify";
    VisionNsfw = "vision.nsfw", 403, "an image is likely not safe for work";
    VisionNsfwMinor = "vision.nsfw_minor", 403, "a possible child together with any NSFW signal";
    // The default policy's refusals of prompts and of repeated attempts.
    PromptSexualMinor = "prompt.sexual_minor", 403, "a sexual prompt that mentions children";
    PromptSexualRealPerson = "prompt.sexual_real_person", 403, "a sexual prompt about a real person";
    PromptPublicFigureNamed = "prompt.public_figure_named", 403, "a prompt that names a public figure";
    PolicyRepeatedAttempts = "policy.repeated_attempts", 403, "repeated refusals for a public figure or a child: a person reviews";
    // The policy engine and its review queue.
    PolicyReviewRequired = "policy.review_required", 403, "a rule sends the request to human review";
    PolicyError = "policy.error", 500, "a policy rule could not be evaluated; the request is refused";
    ReviewNotFound = "review.not_found", 404, "no such review for this app";
    ReviewNotApproved = "review.not_approved", 403, "the review is pending or was denied";
    ReviewMismatch = "review.mismatch", 409, "the request is not the one the review approved";
    ReviewSpent = "review.spent", 409, "the approved review was used already or is over 24 hours old";
    ReviewAlreadyResolved = "review.already_resolved", 409, "the review was resolved already";
    VisionTooManyFaces = "vision.too_many_faces", 422, "an image shows more faces than are checked";
    VisionFailed = "vision.failed", 500, "a model failed on an image";
    VisionUnavailable = "vision.unavailable", 503, "the vision models could not be loaded";
    // The photo library.
    PhotosUnauthorized = "photos.unauthorized", 403, "the provider refused the access token";
    PhotosNotFound = "photos.not_found", 404, "the provider has no such media item";
    PhotosTooLarge = "photos.too_large", 413, "a library photo is over the byte limit";
    PhotosHostNotAllowed = "photos.host_not_allowed", 422, "a download URL is off the allow-list";
    PhotosInvalidUrl = "photos.invalid_url", 422, "a download URL cannot be used";
    PhotosBaseUrlMismatch = "photos.base_url_mismatch", 422, "base_url is not the provider's for that media item";
    PhotosInvalidToken = "photos.invalid_token", 422, "the access token cannot be sent";
    PhotosNotConfigured = "photos.not_configured", 422, "no photo provider API is configured";
    PhotosRejected = "photos.rejected", 502, "the provider refused the request";
    PhotosUnavailable = "photos.unavailable", 502, "the provider failed, timed out or redirected elsewhere";
    // Enrollment of subjects.
    SubjectEnrollNoFace = "subject.enroll_no_face", 422, "an enrollment photo shows no face";
    SubjectEnrollSeveralFaces = "subject.enroll_several_faces", 422, "an enrollment photo shows several faces";
    SubjectEnrollDifferentPeople = "subject.enroll_different_people", 422, "enrollment photos show different people";
    SubjectEnrollPublicFigure = "subject.enroll_public_figure", 422, "an enrollment photo shows a public figure";
    SubjectEnrollPossibleMinor = "subject.enroll_possible_minor", 422, "an enrollment photo shows a likely minor not enrolled as one";
    SubjectEnrollEyesCovered = "subject.enroll_eyes_covered", 422, "an enrollment or confirmation photo whose eyes are hidden (a bar, dark glasses)";
    // Confirmation by the person shown, and their own controls.
    SubjectTokenInvalid = "subject.token_invalid", 401, "the confirmation or personal token is wrong, already used, or not this subject's";
    SubjectConfirmationExpired = "subject.confirmation_expired", 410, "the confirmation token has expired; the app can issue a new one";
    SubjectAlreadyConfirmed = "subject.already_confirmed", 409, "the subject is already confirmed, deleted or withdrawn: no confirmation token to issue";
    SubjectGuardianRequired = "subject.guardian_required", 422, "a minor's consent is confirmed by their guardian (as: guardian), an adult's by themselves";
    SubjectConfirmPhotoRequired = "subject.confirm_photo_required", 422, "the app requires a photo with each confirmation";
    SubjectConfirmPhotoMismatch = "subject.confirm_photo_mismatch", 403, "the confirmation photo does not show the enrolled person";
    SubjectRateLimited = "subject.rate_limited", 429, "too many confirmation or personal-token requests from this address";
    // Records.
    GrantNotFound = "grant.not_found", 404, "no such grant for this app";
    SubjectNotFound = "subject.not_found", 404, "no such subject for this app";
    ReceiptNotFound = "receipt.not_found", 404, "no such receipt for this app";
    // likeness failed: nothing unsigned is returned.
    GeneratorFailed = "generator.failed", 500, "the generator failed";
    GeneratorBadResponse = "generator.bad_response", 502, "a backend's answer was refused: not images, too many or few, the wrong size, over the limits";
    GeneratorUnavailable = "generator.unavailable", 503, "a backend failed, refused the connection, or its circuit breaker is open";
    GeneratorTimeout = "generator.timeout", 504, "a backend did not answer in time";
    GeneratorUnknown = "generator.unknown", 422, "the request names a backend that is not configured";
    GeneratorRejected = "generator.rejected", 422, "a backend refused this request: its content policy, or a value it does not take";
    ConsentProcessorNotAllowed = "consent.processor_not_allowed", 403, "the grant does not let its photos go to the request's backend";
    OutputEncodeFailed = "output.encode_failed", 500, "an output could not be encoded";
    WatermarkFailed = "watermark.failed", 500, "the watermark could not be read back from an output";
    ProvenanceSigningFailed = "provenance.signing_failed", 500, "an output could not be signed";
    Internal = "internal", 500, "likeness failed";
    ServerOverloaded = "server.overloaded", 503, "too many generations running or waiting";
    TenantRateLimited = "tenant.rate_limited", 429, "more generation requests than the app's quota per minute";
    TenantConcurrencyExceeded = "tenant.concurrency_exceeded", 429, "more generations at once than the app's quota";
    StorageUnavailable = "storage.unavailable", 503, "the database is unreachable or could not store the records";
    // The public soft-binding resolver.
    ResolverInvalidQuery = "resolver.invalid_query", 400, "a missing or malformed parameter";
    ResolverUnsupportedAlg = "resolver.unsupported_alg", 400, "a soft-binding algorithm the resolver does not know";
    ResolverImageCorrupt = "resolver.image_corrupt", 400, "the uploaded image cannot be decoded";
    ResolverManifestNotFound = "resolver.manifest_not_found", 404, "no manifest with this id";
    ResolverImageTooLarge = "resolver.image_too_large", 413, "the uploaded image is over the decode limits";
    ResolverUnsupportedMediaType = "resolver.unsupported_media_type", 415, "the upload is not an image";
    ResolverRateLimited = "resolver.rate_limited", 429, "too many requests from this address";
    ResolverBusy = "resolver.busy", 503, "too many images are being read";
    // The public detection API's `{"url": ...}`.
    VerifyUrlInvalid = "verify.url_invalid", 422, "the url is not https, not a URL, or carries user info";
    VerifyUrlNotPublic = "verify.url_not_public", 422, "the url's host is or resolves to a private, loopback or link-local address";
    VerifyUrlUnavailable = "verify.url_unavailable", 502, "the site failed, timed out, refused or redirected too often";
}

impl ErrorCode {
    /// The code for its string, as clients and tests write it.
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

/// What a client is told a refusal or failure was: a registered code, or
/// the reason a policy rule gives (answered 403; trust-and-safety teams may
/// add their own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    Code(ErrorCode),
    Rule(String),
}

impl Reason {
    /// A rule's reason, as the registered code when it is one.
    pub fn of_rule(reason: &str) -> Reason {
        ErrorCode::parse(reason).map_or_else(|| Reason::Rule(reason.to_string()), Reason::Code)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reason::Code(c) => c.as_str(),
            Reason::Rule(r) => r,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Reason::Code(c) => c.status(),
            Reason::Rule(_) => 403,
        }
    }
}

impl From<ErrorCode> for Reason {
    fn from(c: ErrorCode) -> Reason {
        Reason::Code(c)
    }
}

impl PartialEq<ErrorCode> for Reason {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == Reason::Code(*other)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ErrorCode;

    /// (code, status) pairs of the README's table under `### Errors`.
    fn readme_table() -> BTreeSet<(String, u16)> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let section = readme.split("### Errors").nth(1).expect("README has ### Errors");
        let mut pairs = BTreeSet::new();
        for line in section.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let Ok(status) = cells[1].parse::<u16>() else { continue };
            for code in cells[2].split('`').skip(1).step_by(2) {
                pairs.insert((code.to_string(), status));
            }
        }
        pairs
    }

    #[test]
    fn the_readme_table_and_the_registry_agree_both_ways() {
        let registry: BTreeSet<(String, u16)> =
            ErrorCode::ALL.iter().map(|c| (c.as_str().to_string(), c.status())).collect();
        let readme = readme_table();
        let missing: Vec<_> = registry.difference(&readme).collect();
        let unknown: Vec<_> = readme.difference(&registry).collect();
        assert!(missing.is_empty(), "in the registry but not in the README's table: {missing:?}");
        assert!(unknown.is_empty(), "in the README's table but not in the registry: {unknown:?}");
    }

    #[test]
    fn codes_are_unique_dotted_and_parse_back() {
        let mut seen = BTreeSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(c == ErrorCode::Internal || c.as_str().split('.').count() == 2, "{c} is not area.name");
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!((400..600).contains(&c.status()), "{c}");
        }
    }
}
