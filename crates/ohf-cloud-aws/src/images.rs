//! Images named through SSM parameters, as IBM and ORB templates write them: `imageId` may be a
//! parameter path (`/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64`) or
//! `resolve:ssm:<path>`. The parameter is read once per template version and kept; a template
//! that changes reads it again.

use ohf_app::{CloudError, CloudErrorKind};
use ohf_domain::Template;

use crate::{AwsProvider, errors};

/// The SSM parameter an `imageId` names, if it names one.
pub(crate) fn parameter_of(image: &str) -> Option<&str> {
    match image.strip_prefix("resolve:ssm:") {
        Some(name) => Some(name),
        None => image.starts_with('/').then_some(image),
    }
}

/// A template version: its id and a digest of the whole template.
fn version_of(t: &Template) -> String {
    let body = serde_json::to_string(t).unwrap_or_default();
    let digest = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{}-{digest:016x}", t.id())
}

impl AwsProvider {
    /// The image `t` launches: its `imageId`, with an SSM parameter read (once per template
    /// version) to the image id it holds.
    pub(crate) async fn image_of(&self, t: &Template) -> Result<Option<String>, CloudError> {
        let Some(image) = t.image_id() else { return Ok(None) };
        let Some(name) = parameter_of(image) else { return Ok(Some(image.to_owned())) };
        let version = version_of(t);
        if let Some(found) = self.images.lock().unwrap_or_else(|p| p.into_inner()).get(&version) {
            return Ok(Some(found.clone()));
        }
        let out = self.ssm("GetParameter").get_parameter().name(name).send().await.map_err(|e| {
            let mut e = errors::translate("GetParameter", e);
            e.message = format!("SSM parameter {name} (the template's imageId): {}", e.message);
            e
        })?;
        let Some(value) = out.parameter().and_then(|p| p.value()).filter(|v| !v.is_empty()) else {
            return Err(CloudError::new(
                CloudErrorKind::Validation,
                "ParameterNotFound",
                format!("SSM parameter {name} holds no image id"),
            ));
        };
        tracing::info!(template = %t.id(), parameter = name, image = value, "image resolved from SSM");
        self.images.lock().unwrap_or_else(|p| p.into_inner()).insert(version, value.to_owned());
        Ok(Some(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_named_by_path_or_by_resolve_ssm() {
        assert_eq!(parameter_of("ami-0123"), None);
        assert_eq!(
            parameter_of("/aws/service/ami-amazon-linux-latest/x"),
            Some("/aws/service/ami-amazon-linux-latest/x")
        );
        assert_eq!(parameter_of("resolve:ssm:/team/image"), Some("/team/image"));
        assert_eq!(parameter_of("resolve:ssm:team-image"), Some("team-image"));
    }
}
