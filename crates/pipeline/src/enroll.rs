//! Enrollment: turning a subject's photos into face embeddings, kept only
//! with the subject's consent.

use crate::{EnrollmentProblem, Pipeline, PipelineError, ReferenceInput};

impl Pipeline {
    /// Checks enrollment photos and returns one face embedding per photo:
    /// exactly one face each, eyes in view, not a public figure, and not a likely minor
    /// unless the subject is declared a minor (whose guardian consented;
    /// the consent crate checks that). CPU-bound: call it off the async workers.
    pub fn enroll(&self, photos: Vec<ReferenceInput>, minor: bool) -> Result<Vec<Vec<f32>>, PipelineError> {
        let moderation = self.moderation();
        let vision = moderation.models()?;
        let t = &moderation.thresholds;
        let mut embeddings: Vec<Vec<f32>> = Vec::with_capacity(photos.len());
        for (i, photo) in photos.into_iter().enumerate() {
            let index = i + 1;
            let problem = |problem| PipelineError::Enrollment { index, problem };
            let decoded = likeness_media::decode(&photo.bytes, photo.declared, &self.limits().decode)
                .map_err(|source| PipelineError::Reference { index, source })?;
            drop(photo);
            let analysis = vision.analyze(&decoded.pixels)?;
            let face = match analysis.faces.as_slice() {
                [] => return Err(problem(EnrollmentProblem::NoFace)),
                [one] => one,
                many => return Err(problem(EnrollmentProblem::SeveralFaces(many.len()))),
            };
            if face.eyes_covered >= t.eyes_covered {
                return Err(problem(EnrollmentProblem::EyesCovered(face.eyes_covered)));
            }
            if let Some(m) = moderation.gallery.matches(&face.embedding, t.match_distance).first() {
                return Err(problem(EnrollmentProblem::PublicFigure(m.name.clone())));
            }
            if face.p_minor >= t.minor && !minor {
                return Err(problem(EnrollmentProblem::PossibleMinor(face.p_minor)));
            }
            // One subject, one person: every photo must match the first.
            if let Some(first) = embeddings.first() {
                let d = face.embedding.distance_to(first);
                if d >= t.match_distance {
                    return Err(problem(EnrollmentProblem::DifferentPerson(d)));
                }
            }
            embeddings.push(face.embedding.0.to_vec());
        }
        Ok(embeddings)
    }

    /// Checks a confirmation photo against a subject's enrolled faces: it
    /// must pass as an enrollment photo would (one face, no public figure,
    /// a likely minor only for a minor) and show the same person (the same
    /// model and distance as matching). The nearest distance, or `None`
    /// when it is not the enrolled person or nothing is enrolled. CPU-bound.
    pub fn match_confirmation_photo(
        &self,
        photo: ReferenceInput,
        minor: bool,
        enrolled: &[Vec<f32>],
    ) -> Result<Option<f32>, PipelineError> {
        let embedding = self.enroll(vec![photo], minor)?.pop().unwrap_or_default();
        let nearest = enrolled.iter().map(|e| likeness_consent::distance(&embedding, e)).min_by(f32::total_cmp);
        Ok(nearest.filter(|d| *d < self.moderation().thresholds.match_distance))
    }
}
