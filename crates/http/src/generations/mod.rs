//! `POST /v1/generations`: one personalized generation, from the wire to
//! signed images. The handler is the request path in order; each step is
//! a function of its own below or in a submodule.

mod consent;
mod context;
mod log;
mod order;
mod record;
mod wire;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use likeness_media::MediaType;
use likeness_photos::LibraryItem;
use likeness_pipeline::timing::Step;
use likeness_pipeline::{Generated, GenerationOutcome, GenerationRequest, PipelineError, ReferenceInput};

use crate::admission;
use crate::auth::TenantId;
use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::state::AppState;
pub(crate) use order::{Order, Reference};
pub(crate) use wire::GenerationBody;
use wire::GenerationResponse;

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(admitted): Extension<admission::Admitted>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = crate::body::read_json(&state, &headers, body).await?;
    // Up to 48 MiB of JSON and base64: parsed on a blocking thread.
    let order = crate::body::off_workers(move || {
        let Json(body) = Json::<GenerationBody>::from_bytes(&bytes)?;
        body.into_order(request_id)
    })
    .await?;
    let outcome = generate(&state, tenant, order, admitted).await?;
    let answer = crate::body::off_workers(move || {
        serde_json::to_vec(&GenerationResponse::from(outcome)).map_err(ApiError::task_failed)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}

/// The request path, shared by the native API and the OpenAI door, for a
/// request admitted before its body was read.
pub(crate) async fn generate(
    state: &AppState,
    tenant: String,
    mut order: Order,
    admitted: admission::Admitted,
) -> Result<GenerationOutcome, ApiError> {
    let style = state.pipeline.validate(&order.request)?;
    let backend = state.backend_for(&tenant, order.backend.as_deref())?;
    order.backend = backend.as_ref().map(|b| b.name().to_string());
    let who = log::Requester { tenant, user: order.request.user.clone(), request_id: order.request.request_id.clone() };
    let consent = match consent::check(state, &who.tenant, &order).await {
        Ok(c) => c,
        Err(consent::Refused::Consent(e)) => return Err(who.consent_refused(state, e).await),
        Err(consent::Refused::Other(e)) => return Err(e),
    };
    let recording = record::Recording::new(state, &who, &order, &consent);
    let request = fetch_library_photos(state, order.request).await?;
    let fingerprint = likeness_pipeline::fingerprint(&request, style, &order.subjects);
    let mut context = context::of(state, &who.tenant, &who.user, order.review_id.as_deref(), &fingerprint).await?;
    if let Some(b) = &backend {
        context.backend = Some(b.name().to_string());
        context.generator = Some(b.generator());
    }
    let outcome = match produce(state, &admitted, backend, request, consent, context, &order.options).await {
        Ok(outcome) => outcome,
        Err(Failure::Pipeline(e)) => return Err(who.refused(state, e, &fingerprint).await),
        Err(Failure::Api(e)) => return Err(e),
    };
    {
        let _timing = state.pipeline.step_times().timer(Step::Store);
        recording.store(state, &who, &outcome).await?;
    }
    Ok(outcome)
}

/// Why no images were made: the pipeline refused or failed (a decision to
/// log when it is one), or the gateway around it did.
enum Failure {
    Pipeline(PipelineError),
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

/// Runs the pipeline. With the built-in generator, all of it on a CPU
/// slot; with a backend, the checks before and after on a CPU slot and the
/// wait for the backend on neither a CPU slot nor a blocked worker.
async fn produce(
    state: &AppState,
    admitted: &admission::Admitted,
    backend: Option<Arc<likeness_backends::Backend>>,
    request: GenerationRequest,
    consent: likeness_pipeline::RequestConsent,
    context: likeness_pipeline::RequestContext,
    options: &likeness_backends::Options,
) -> Result<GenerationOutcome, Failure> {
    let pipeline = state.pipeline.clone();
    let Some(backend) = backend else {
        return state
            .admission
            .run(admitted, move || pipeline.run(request, consent, context))
            .await?
            .map_err(Failure::Pipeline);
    };
    let p = pipeline.clone();
    let (prepared, job) = state
        .admission
        .run(admitted, move || {
            let prepared = p.prepare(request, consent, context)?;
            let job = prepared.job()?;
            Ok((prepared, job))
        })
        .await?
        .map_err(Failure::Pipeline)?;
    let images = {
        let _timing = state.pipeline.step_times().timer(Step::Generate);
        backend.generate(&job, options).await
    };
    let images = images.map_err(|e| {
        state.metrics.backend_error(backend.name(), e.code().as_str());
        Failure::Api(e.into())
    })?;
    drop(job);
    let finished = state.admission.run(admitted, move || pipeline.finish(prepared, Generated::Encoded(images))).await?;
    if let Err(e @ PipelineError::BadOutput(_)) = &finished {
        // An answer that is not what was asked is the backend's failure too.
        state.metrics.backend_error(backend.name(), e.code().as_str());
    }
    finished.map_err(Failure::Pipeline)
}

/// Brings the library photos into memory, all at once; uploads are already
/// there. Called only once consent allows and the request is admitted.
async fn fetch_library_photos(
    state: &AppState,
    mut request: GenerationRequest<Reference>,
) -> Result<GenerationRequest, ApiError> {
    let items: Vec<LibraryItem> = request
        .references
        .iter()
        .filter_map(|r| match r {
            Reference::Library(l) => Some(l.item.clone()),
            Reference::Upload(_) => None,
        })
        .collect();
    let mut fetched = state.photos.fetch_all(&items).await.into_iter();
    let references = std::mem::take(&mut request.references)
        .into_iter()
        .enumerate()
        .map(|(index, r)| match r {
            Reference::Upload(input) => Ok(input),
            Reference::Library(_) => {
                let photo = fetched.next().expect("one fetch per library reference");
                let photo = photo.map_err(|e| ApiError::photo(index + 1, e))?;
                let declared = photo.content_type.as_deref().and_then(MediaType::from_mime);
                Ok(ReferenceInput { bytes: photo.bytes, declared })
            }
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(request.with_references(references))
}
