//! Create: decoding the body as kube-apiserver does (media type, JSON, apiVersion and kind, field
//! types), the v1 validation, name generation, storing, and the 409 and 422 answers.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::authn::Caller;
use super::csr::{FieldError, validate_spec};
use super::meta::{generate_name, rfc3339, uuid};
use super::serve::{Resp, json_response, status_response};
use super::store::{CsrEntry, Event, Inner, Res, b64, str_list};
use super::{CSR_API_VERSION, CSR_GROUP, lock};

/// A create body that cannot be decoded: 400 with the decoder's message.
fn cannot_handle(detail: &str) -> Resp {
    status_response(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!(
            "CertificateSigningRequest in version \"v1\" cannot be handled as a CertificateSigningRequest: {detail}"
        ),
        None,
    )
}

pub(super) fn create_csr(
    inner: &Arc<Inner>,
    caller: &Caller,
    raw: Option<Bytes>,
    content_type: Option<&str>,
    dry_run: bool,
) -> Resp {
    let Some(raw) = raw else {
        return status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
            None,
        );
    };
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if !media.is_empty() && !media.eq_ignore_ascii_case("application/json") {
        return status_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (the stand-in speaks JSON only; got {media:?})"
            ),
            None,
        );
    }
    let object = match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "couldn't get version/kind; json parse error: not a JSON object",
                None,
            );
        }
        Err(e) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("couldn't get version/kind; json parse error: {e}"),
                None,
            );
        }
    };
    match object
        .get("apiVersion")
        .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
    {
        None => {}
        Some(v) if v == CSR_API_VERSION => {}
        Some(v) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "the API version in the data ({v}) does not match the expected API version ({CSR_API_VERSION})"
                ),
                None,
            );
        }
    }
    match object
        .get("kind")
        .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
    {
        None => {}
        Some(k) if k == Res::Csr.kind() => {}
        Some(k) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    Res::Csr.kind()
                ),
                None,
            );
        }
    }
    let CreateBody {
        metadata,
        name,
        generate_name: generate_base,
        signer,
        request,
        usages,
        expiration,
    } = match decode_create(&object) {
        Ok(body) => body,
        Err(detail) => return cannot_handle(&detail),
    };

    let (rv, stored, name) = {
        let mut state = lock(&inner.state);
        let name = if !name.is_empty() {
            name
        } else if !generate_base.is_empty() {
            loop {
                let candidate = generate_name(&generate_base);
                if !state.csr_index.contains_key(&candidate) {
                    break candidate;
                }
            }
        } else {
            String::new()
        };
        let mut errors = Vec::new();
        if name.is_empty() {
            errors.push(FieldError {
                field: "metadata.name".into(),
                reason: "FieldValueRequired",
                body: "Required value: name or generateName is required".into(),
            });
        }
        errors.extend(validate_spec(&request, &signer, &usages, expiration));
        if !errors.is_empty() {
            return invalid(&name, &errors);
        }
        if state.csr_index.contains_key(&name) {
            return status_response(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", Res::Csr.qualified()),
                Some(json!({"name": name, "group": CSR_GROUP, "kind": Res::Csr.plural()})),
            );
        }
        let mut meta = Map::new();
        meta.insert("name".into(), json!(name));
        if !generate_base.is_empty() {
            meta.insert("generateName".into(), json!(generate_base));
        }
        for key in ["labels", "annotations"] {
            if let Some(v) = metadata.get(key).filter(|v| v.is_object()) {
                meta.insert(key.into(), v.clone());
            }
        }
        meta.insert("uid".into(), json!(uuid()));
        meta.insert("creationTimestamp".into(), json!(rfc3339(SystemTime::now())));
        // Username, UID and groups are the requester's, as the API server fills them in.
        let identity = caller.user.clone();
        let groups = caller.groups.clone();
        let mut spec_out = Map::new();
        spec_out.insert("request".into(), json!(b64(&request)));
        spec_out.insert("signerName".into(), json!(signer));
        if let Some(e) = expiration {
            spec_out.insert("expirationSeconds".into(), json!(e));
        }
        spec_out.insert("usages".into(), json!(usages));
        spec_out.insert("username".into(), json!(identity));
        spec_out.insert("groups".into(), json!(groups));
        let mut stored = json!({
            "kind": Res::Csr.kind(),
            "apiVersion": CSR_API_VERSION,
            "metadata": Value::Object(meta),
            "spec": Value::Object(spec_out),
            "status": {},
        });
        if dry_run {
            stored["metadata"]["resourceVersion"] = json!("");
            return json_response(StatusCode::CREATED, &stored);
        }
        let rv = state.bump();
        stored["metadata"]["resourceVersion"] = json!(rv.to_string());
        let index = state.csrs.len();
        state.csrs.push(CsrEntry {
            object: stored.clone(),
            deleted: false,
        });
        state.csr_index.insert(name.clone(), index);
        state.events.push(Event {
            rv,
            res: Res::Csr,
            kind: "ADDED",
            object: stored.clone(),
        });
        (rv, stored, name)
    };
    inner.changed.send_replace(rv);
    let mode = lock(&inner.state).mode.clone();
    inner.apply_mode(&name, mode);
    json_response(StatusCode::CREATED, &stored)
}

/// What a create body says.
struct CreateBody {
    metadata: Map<String, Value>,
    name: String,
    generate_name: String,
    signer: String,
    request: Vec<u8>,
    usages: Vec<String>,
    expiration: Option<i64>,
}

/// The fields of a create body, or the decoder's complaint (a 400).
fn decode_create(object: &Map<String, Value>) -> Result<CreateBody, String> {
    let as_object = |v: Option<&Value>, field: &str| -> Result<Map<String, Value>, String> {
        match v {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => Err(format!(
                "json: cannot unmarshal {} into Go struct field CertificateSigningRequest.{field}",
                json_type(other)
            )),
        }
    };
    let metadata = as_object(object.get("metadata"), "metadata")?;
    let spec = as_object(object.get("spec"), "spec")?;
    let string_field = |m: &Map<String, Value>, key: &str, path: &str| -> Result<String, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "json: cannot unmarshal {} into Go struct field {path} of type string",
                json_type(other)
            )),
        }
    };
    let name = string_field(&metadata, "name", "ObjectMeta.metadata.name")?;
    let generate_name = string_field(&metadata, "generateName", "ObjectMeta.metadata.generateName")?;
    let signer = string_field(&spec, "signerName", "CertificateSigningRequestSpec.spec.signerName")?;
    let request = match spec.get("request") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            base64::engine::general_purpose::STANDARD
                .decode(&cleaned)
                .map_err(|e| format!("illegal base64 data: {e}"))?
        }
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field CertificateSigningRequestSpec.spec.request of type []uint8",
                json_type(other)
            ));
        }
    };
    let usages = match spec.get("usages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => str_list(spec.get("usages")),
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field CertificateSigningRequestSpec.spec.usages of type []v1.KeyUsage",
                json_type(other)
            ));
        }
    };
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64().filter(|n| i32::try_from(*n).is_ok()) {
            Some(n) => Some(n),
            None => {
                return Err(format!(
                    "json: cannot unmarshal {} into Go struct field CertificateSigningRequestSpec.spec.expirationSeconds of type int32",
                    json_type(v)
                ));
            }
        },
    };
    Ok(CreateBody {
        metadata,
        name,
        generate_name,
        signer,
        request,
        usages,
        expiration,
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// 422 Invalid, as `apierrors.NewInvalid` writes it.
fn invalid(name: &str, errors: &[FieldError]) -> Resp {
    let full: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.body)).collect();
    let summary = if full.len() == 1 {
        full[0].clone()
    } else {
        format!("[{}]", full.join(", "))
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.body, "field": e.field}))
        .collect();
    status_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!("{}.{CSR_GROUP} \"{name}\" is invalid: {summary}", Res::Csr.kind()),
        Some(json!({"name": name, "group": CSR_GROUP, "kind": Res::Csr.kind(), "causes": causes})),
    )
}
